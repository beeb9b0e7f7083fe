#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter, or explain and exit 1.
# Order: $PYTHON if set, python3.12 / python3.13 / python3 on PATH, then pyenv's
# installed versions. A pyenv shim that exists but cannot run is skipped.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
candidates+=(python3.12 python3.13 python3.14 python3)
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for d in "$root"/versions/3.1[2-9]*; do
  [ -x "$d/bin/python3" ] && candidates+=("$d/bin/python3")
done
for c in "${candidates[@]}"; do
  p=$(command -v "$c" 2>/dev/null) || continue
  if ok "$p"; then
    "$p" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "error: bayes_gmm needs Python >= 3.12, and none was found." >&2
echo "  Tried: ${candidates[*]}" >&2
echo "  Install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
exit 1
