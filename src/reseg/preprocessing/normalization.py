"""Intensity normalisation named in a model card; training and inference share it so they never drift."""

from __future__ import annotations

from typing import Any

import numpy as np

PERCENTILE = "percentile"
WINDOW = "window"


def normalize_slices(slices: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Map (N, H, W) raw intensities to float32 roughly in [0, 1] as the card's normalisation says.

    - ``{"method": "percentile", "lower": 1, "upper": 99}``: per slice, the given percentiles go to 0 and 1
      (robust to the scanner's gain and display mapping, which differ between OCT devices).
    - ``{"method": "window", "low": -175, "high": 250}``: a fixed intensity window (CT Hounsfield units).
    """
    data = np.asarray(slices, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    method = spec.get("method")
    if method == PERCENTILE:
        lower, upper = np.percentile(
            data.reshape(len(data), -1), [spec.get("lower", 1.0), spec.get("upper", 99.0)], axis=1
        )
        scale = np.maximum(upper - lower, 1e-6)
        return ((data - lower[:, None, None]) / scale[:, None, None]).astype(np.float32, copy=False)
    if method == WINDOW:
        low, high = float(spec["low"]), float(spec["high"])
        return ((np.clip(data, low, high) - low) / (high - low)).astype(np.float32, copy=False)
    raise ValueError(f"unknown normalisation method {method!r} (expected {PERCENTILE!r} or {WINDOW!r})")
