"""Slice-by-slice inference over 2-D images and 3-D stacks, in batches, with progress and cancellation.

`iter_segment` is a generator: it yields a `Progress` after every batch, so a caller can update a progress
bar, show partial results (they are written into the output arrays as they finish) or stop between batches
by closing the generator. Results go into preallocated uint8 (labels) and float32 (confidence) arrays, so
peak memory does not grow with the length of the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reseg.errors import DeviceMemoryError, ResegError
from reseg.inference.backends import autocast, batch_size_for
from reseg.inference.postprocessing import postprocess, postprocess_volume, probability_step, volume_steps
from reseg.inference.surfaces import OCT_SURFACES
from reseg.io import as_stack, max_slice_pixels
from reseg.preprocessing.normalization import normalize_slices
from reseg.preprocessing.resampling import resize_batch, spacing_grid
from reseg.zoo.weights import LoadedModel


@dataclass(frozen=True)
class Progress:
    """Reported after each batch: which slices just finished, and how far the run is; once more, with every
    slice, when a volume step has revised the whole stack."""

    done: int
    total: int
    slices: tuple[int, ...]
    batch_size: int


@dataclass
class SegmentationResult:
    """Labels (uint8), max-softmax confidence if asked, and for a card with `layer_surfaces` the boundary
    surfaces the labels were filled from: (8, Z, W) rows, see `reseg.inference.surfaces`."""

    labels: np.ndarray
    confidence: np.ndarray | None
    device: torch.device
    surfaces: np.ndarray | None = None


@dataclass
class _Batch:
    labels: np.ndarray  # (N, H, W) argmax
    confidence: np.ndarray | None  # (N, H, W) max softmax, when asked
    probabilities: np.ndarray | None  # (N, C, H, W), when a probability step needs them


def _predict_batch(
    model: LoadedModel,
    raw: np.ndarray,
    want_confidence: bool,
    pixel_spacing: Sequence[float] | None,
    want_probabilities: bool = False,
) -> _Batch:
    batch = torch.from_numpy(normalize_slices(raw, model.card.normalization))[:, None]
    shape = (int(batch.shape[-2]), int(batch.shape[-1]))
    grid = spacing_grid(shape, pixel_spacing, model.card.input_spacing)
    batch = resize_batch(batch, grid).to(model.device, memory_format=torch.channels_last)  # as training does
    flip = "lateral_flip" in model.card.test_time_augmentation
    if not (want_confidence or want_probabilities or flip):  # the argmax alone: no softmax to compute
        labels = resize_batch(_logits(model, batch).float(), shape).argmax(dim=1)
        return _Batch(labels.to(torch.uint8).cpu().numpy(), None, None)
    probabilities = _probabilities(model, batch, shape)
    if flip:  # the mirrored slice's, mirrored back, averaged
        probabilities += _probabilities(model, batch.flip(-1), shape).flip(-1)
        probabilities /= 2
    confidence, labels = probabilities.max(dim=1)
    return _Batch(
        labels.to(torch.uint8).cpu().numpy(),
        confidence.cpu().numpy() if want_confidence else None,
        probabilities.cpu().numpy() if want_probabilities else None,
    )


def _logits(model: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    """The network's logits of a model-grid batch, from the model's backend (or its network as it is)."""
    if model.backend is not None:
        return model.backend.logits(batch)
    with autocast(model.device):
        return model.network(batch)


def _probabilities(model: LoadedModel, batch: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Class probabilities (N, C, H, W) of a model-grid batch, resized back to the slices' `shape`."""
    return torch.softmax(resize_batch(_logits(model, batch).float(), shape), dim=1)


def _check_model_grid(model: LoadedModel, shape: tuple[int, int], pixel_spacing: Sequence[float] | None) -> None:
    """A slice resampled to the model's spacing must still fit the slice budget (`reseg.io.max_slice_pixels`)."""
    grid = spacing_grid(shape, pixel_spacing, model.card.input_spacing)
    limit = max_slice_pixels()
    if grid[0] * grid[1] > limit:
        raise ResegError(
            f"slices of {shape[0]} x {shape[1]} pixels of {tuple(pixel_spacing or ())} mm become "
            f"{grid[0]} x {grid[1]} at the {tuple(model.card.input_spacing or ())} mm of model "
            f"{model.card.name}, more than the {limit / 1e6:g} megapixels a slice may have; check "
            "the scan's pixel size"
        )


def iter_segment(
    model: LoadedModel,
    image: np.ndarray,
    labels_out: np.ndarray,
    *,
    confidence_out: np.ndarray | None = None,
    slice_confidence_out: np.ndarray | None = None,
    batch_size: int | None = None,
    slices: Sequence[int] | None = None,
    pixel_spacing: Sequence[float] | None = None,
    raw: bool = False,
    surfaces_out: np.ndarray | None = None,
    voxel_spacing: Sequence[float] | None = None,
    first_batch_size: int | None = None,
) -> Iterator[Progress]:
    """Segment the given slices of `image` ((H, W) or (Z, H, W)) into `labels_out` (same shape, uint8).

    Only `slices` (default: all) are computed. On an out-of-memory error (a GPU too small for the batch) the
    batch is retried at half the size, down to 1, then DeviceMemoryError is raised. With the in-plane
    `pixel_spacing` (y, x, mm) of the image and a model card that records its training spacing, slices are
    resampled to that spacing (`reseg.preprocessing.resampling`) and the logits back.
    `batch_size` defaults to the backend's choice for the device (`reseg.inference.backends`);
    `Progress.batch_size` tells the caller what batch size finally worked. `slice_confidence_out` (one value
    per slice) receives each slice's mean confidence, which review uses to find the most doubtful slices.
    Unless `raw`, the card's post-processing makes the labels; with a probability step such as
    `layer_surfaces`, `surfaces_out` ((8, Z, W)) receives the surfaces of each computed slice. A card's volume
    steps (`drop_organ_fragments`) run when every slice of the stack has been computed and the (z, y, x)
    `voxel_spacing` is known; they may change any slice, so one more `Progress` then reports all of them.
    `first_batch_size` makes the first batch that small (1: the first slice is shown as soon as it is done,
    not after a whole batch), the later ones `batch_size`.
    """
    stack = as_stack(image)
    labels_stack = as_stack(labels_out)
    confidence_stack = as_stack(confidence_out) if confidence_out is not None else None
    if labels_stack.shape != stack.shape:
        raise ValueError(f"labels_out has shape {labels_out.shape}, image has {image.shape}")
    order = list(range(len(stack))) if slices is None else [int(s) for s in slices]
    if batch_size is None:
        batch_size = model.backend.batch_size if model.backend is not None else batch_size_for(model.device)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_model_grid(model, stack.shape[1:], pixel_spacing)
    surface_step = None if raw else probability_step(model.card.postprocessing)
    model.network.eval()
    done = 0
    with torch.inference_mode():
        while done < len(order):
            size = min(first_batch_size, batch_size) if done == 0 and first_batch_size else batch_size
            chunk = order[done : done + size]
            try:
                want_confidence = confidence_stack is not None or slice_confidence_out is not None
                batch = _predict_batch(model, stack[chunk], want_confidence, pixel_spacing, surface_step is not None)
            except torch.OutOfMemoryError as error:
                if batch_size == 1:
                    raise DeviceMemoryError(str(model.device)) from error
                if model.device.type == "cuda":
                    torch.cuda.empty_cache()
                batch_size //= 2
                continue
            labels, confidence = batch.labels, batch.confidence
            if surface_step is not None and batch.probabilities is not None:
                labels, surfaces = surface_step(batch.probabilities, pixel_spacing)
                if surfaces_out is not None:
                    surfaces_out[:, chunk] = surfaces
            labels_stack[chunk] = labels if raw else postprocess(model.card.postprocessing, labels, stack[chunk])
            if confidence is not None:  # asked for by one of the two outputs
                if confidence_stack is not None:
                    confidence_stack[chunk] = confidence
                if slice_confidence_out is not None:
                    slice_confidence_out[chunk] = confidence.reshape(len(chunk), -1).mean(axis=1)
            done += len(chunk)
            yield Progress(done=done, total=len(order), slices=tuple(chunk), batch_size=batch_size)
    whole_stack = sorted(order) == list(range(len(stack)))
    if not raw and voxel_spacing is not None and whole_stack and volume_steps(model.card.postprocessing):
        postprocess_volume(model.card.postprocessing, labels_stack, voxel_spacing)
        yield Progress(done=done, total=len(order), slices=tuple(order), batch_size=batch_size)


def slice_probabilities(
    model: LoadedModel, image: np.ndarray, pixel_spacing: Sequence[float] | None = None
) -> np.ndarray:
    """The model's class probabilities (N, C, H, W) float32 for (N, H, W) or one (H, W) slice, at the slices'
    size, with the card's test-time augmentation: what the boundary editor's snap routes through."""
    stack = as_stack(image)
    _check_model_grid(model, stack.shape[1:], pixel_spacing)
    model.network.eval()
    with torch.inference_mode():
        probabilities = _predict_batch(model, stack, False, pixel_spacing, want_probabilities=True).probabilities
    assert probabilities is not None  # asked for
    return probabilities.astype(np.float32, copy=False)


def segment(
    model: LoadedModel,
    image: np.ndarray,
    *,
    batch_size: int | None = None,
    with_confidence: bool = False,
    pixel_spacing: Sequence[float] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    raw: bool = False,
    voxel_spacing: Sequence[float] | None = None,
) -> SegmentationResult:
    """Segment a whole image or stack and return labels (uint8, post-processed as the card says unless
    `raw`), if asked max-softmax confidence, and the surfaces of a card with a surface step."""
    labels = np.zeros(image.shape, dtype=np.uint8)
    confidence = np.zeros(image.shape, dtype=np.float32) if with_confidence else None
    stack_shape = as_stack(image).shape
    with_surfaces = not raw and probability_step(model.card.postprocessing) is not None
    surfaces = np.zeros((OCT_SURFACES, stack_shape[0], stack_shape[2]), np.int32) if with_surfaces else None
    for progress in iter_segment(
        model,
        image,
        labels,
        confidence_out=confidence,
        batch_size=batch_size,
        pixel_spacing=pixel_spacing,
        raw=raw,
        surfaces_out=surfaces,
        voxel_spacing=voxel_spacing,
    ):
        if on_progress is not None:
            on_progress(progress)
    return SegmentationResult(labels=labels, confidence=confidence, device=model.device, surfaces=surfaces)
