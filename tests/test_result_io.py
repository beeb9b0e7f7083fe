"""Saving and loading results: atomic, checked, with the user's permissions.

Oracles: the saved arrays themselves (a round trip must give them back bit
for bit), the umask (permissions of any new file), and files damaged by
hand (truncated, bits flipped inside a stored array, a foreign netCDF file,
a result whose arrays contradict its own attributes).
"""

import os
import stat

import numpy as np
import pytest
import xarray as xr

from bayes_gmm import GaussianMixtureEM, MixtureResult, bootstrap_em, make_mixture
from bayes_gmm.result import ResultFileError

TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module", params=TYPES)
def result(request):
    X, _, _ = make_mixture(120, 2, 2, separation=6.0, random_state=0)
    em = GaussianMixtureEM(2, covariance_type=request.param, random_state=0).fit(X)
    return bootstrap_em(em, X, n_boot=8, random_state=0)


def _values(res):
    post = res.posterior
    return {name: post[name].values for name in ("weights", "means", "covariances")}


def test_round_trip_is_exact(result, tmp_path):
    path = result.to_netcdf(tmp_path / "fit.nc")
    again = MixtureResult.from_netcdf(path)
    for name, values in _values(result).items():
        np.testing.assert_array_equal(_values(again)[name], values)
    assert again.covariance_type == result.covariance_type


def test_saved_file_gets_the_users_permissions(result, tmp_path):
    old = os.umask(0o022)
    try:
        path = result.to_netcdf(tmp_path / "fit.nc")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    old = os.umask(0o077)
    try:
        path = result.to_netcdf(tmp_path / "private.nc")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_truncated_file_is_named_damaged(result, tmp_path):
    path = result.to_netcdf(tmp_path / "fit.nc")
    data = path.read_bytes()
    for keep in (0, 100, len(data) // 2, len(data) - 100):
        bad = tmp_path / f"cut{keep}.nc"
        bad.write_bytes(data[:keep])
        with pytest.raises(ResultFileError, match=r"damaged file") as info:
            MixtureResult.from_netcdf(bad)
        assert str(bad) in str(info.value)


def test_bit_flips_inside_a_stored_array_are_caught(result, tmp_path):
    path = result.to_netcdf(tmp_path / "fit.nc")
    data = bytearray(path.read_bytes())
    means = np.ascontiguousarray(result.posterior["means"].values)
    at = bytes(data).find(means.tobytes()[:48])
    assert at > 0  # the array is stored as is (no compression)
    for offset in (0, 8, means.nbytes // 2):
        flipped = bytearray(data)
        flipped[at + offset] ^= 0x01  # the lowest bit of one byte
        bad = tmp_path / f"flip{offset}.nc"
        bad.write_bytes(bytes(flipped))
        with pytest.raises(ResultFileError, match="damaged file"):
            MixtureResult.from_netcdf(bad)


def test_foreign_netcdf_is_not_a_result(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"t": ("time", np.arange(5.0))}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ResultFileError, match="is not a bayes_gmm result"):
        MixtureResult.from_netcdf(path)
    text = tmp_path / "notes.nc"
    text.write_text("hello\n")
    with pytest.raises(ResultFileError, match="damaged file, or not a netCDF"):
        MixtureResult.from_netcdf(text)


def test_arrays_that_contradict_the_attributes_are_caught_at_load(result, tmp_path):
    dt = result.datatree.copy(deep=True)
    dt.attrs["n_components"] = 3  # the arrays hold 2 components
    path = tmp_path / "k3.nc"
    dt.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ResultFileError, match=r"K=3"):
        MixtureResult.from_netcdf(path)
    dt = result.datatree.copy(deep=True)
    post = dt["posterior"].to_dataset()
    post["weights"] = post["weights"] * 2.0
    dt["posterior"] = xr.DataTree(post)
    path = tmp_path / "w.nc"
    dt.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ResultFileError, match="weights are not probabilities"):
        MixtureResult.from_netcdf(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such result file"):
        MixtureResult.from_netcdf(tmp_path / "nope.nc")
    with pytest.raises(IsADirectoryError):
        MixtureResult.from_netcdf(tmp_path)


def test_failed_save_keeps_the_previous_file(result, tmp_path, monkeypatch):
    path = result.to_netcdf(tmp_path / "fit.nc")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", boom)
    with pytest.raises(OSError, match="disk full"):
        result.to_netcdf(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc"]
