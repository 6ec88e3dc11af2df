"""reseg: the napari-reseg engine (models, inference, IO, training). Headless: never imports Qt or napari."""

__version__ = "0.1.0"
