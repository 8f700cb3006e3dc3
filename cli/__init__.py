"""The `keras-sisa` command line: a thin layer over the Python API."""
