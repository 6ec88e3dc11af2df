"""Evaluating a model on a labelled training-set folder or a device's boundaries: per-class scores (`metrics`)
and the evaluation reports (`evaluate`)."""
