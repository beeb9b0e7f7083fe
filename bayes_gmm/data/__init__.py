"""Bundled data sets (CSV) and their provenance (README.md)."""
