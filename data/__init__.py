"""Shipped data: installed as the package `stemlab._data` (see `stemlab.model.shipped`)."""
