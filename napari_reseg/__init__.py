"""napari-reseg: review, correct and export deep-learning segmentations in napari."""
