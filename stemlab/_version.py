"""The one version number: pyproject.toml reads it (dynamic), `stemlab.__version__` is it."""

__version__ = "0.1.0"
