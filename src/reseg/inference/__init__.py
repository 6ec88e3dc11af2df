"""Segmenting a scan: batched inference on the model's grid (`segmentation`) and the anatomical clean-up of its
labels (`postprocessing`)."""
