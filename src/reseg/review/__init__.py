"""Reviewing a segmentation: per-slice review state (`state`), crash-safe sessions (`session`), edit statistics
(`edits`) and the export of reviewed corrections for retraining (`export`). Imports no torch: the plugin's
review runs inside napari's process."""
