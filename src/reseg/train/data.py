"""The training data pipeline: slices normalised and resampled as inference will see them, augmented random
crops, and a sampler that gives every training folder its share of the batches."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from reseg.data.dataset import Scan
from reseg.data.device_styles import random_style, render_style
from reseg.preprocessing.normalization import normalize_slices
from reseg.preprocessing.resampling import resample_image, resample_labels, spacing_grid


class RandDeviceStyle(mt.RandomizableTransform):
    """Show a normalised OCT slice as a random device would (:mod:`reseg.data.device_styles`), normalised again.

    It works on the whole slice, before cropping, because the card's normalisation (percentiles of the slice)
    is part of what a device's look does to the model's input.
    """

    def __init__(self, prob: float, normalization: dict[str, Any]):
        super().__init__(prob)
        self.normalization = normalization

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        self.randomize(None)
        if not self._do_transform:
            return data
        image = np.asarray(data["image"][0])
        rng = np.random.default_rng(self.R.randint(2**31))  # drawn from MONAI's per-transform random state
        styled = render_style(image * 255.0, random_style(rng), rng)
        return {**data, "image": normalize_slices(styled, self.normalization)}


class AugmentedCrops(Dataset):
    """Normalised training slices, augmented and cropped to a fixed size on every access.

    `appearance` adds the intensity changes that tell devices and eyes apart; with `normalization` (the card's)
    also whole-slice re-rendering in random device styles (OCT).
    """

    def __init__(
        self,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        crop: tuple[int, int],
        flip: bool,
        appearance: bool,
        seed: int,
        normalization: dict[str, Any] | None = None,
    ):
        self.images, self.labels = images, labels
        keys = ("image", "label")
        intensity: list[Any] = [mt.RandScaleIntensityd("image", factors=0.2, prob=0.5)]
        if appearance:
            # Devices, exports and eyes differ in gain across the frame, depth fall-off, speckle averaging and
            # grey-level mapping; randomising these keeps a model from learning one source's look as anatomy.
            intensity += [
                mt.RandBiasFieldd("image", degree=3, coeff_range=(0.0, 0.3), prob=0.5),
                mt.RandGaussianSmoothd("image", sigma_x=(0.25, 1.5), sigma_y=(0.25, 1.5), prob=0.3),
                mt.RandHistogramShiftd("image", num_control_points=(5, 10), prob=0.3),
            ]
        intensity += [
            mt.RandAdjustContrastd("image", gamma=(0.5, 2.0) if appearance else (0.7, 1.5), prob=0.5),
            mt.RandGaussianNoised("image", std=0.05, prob=0.3),
        ]
        # A device's look changes what the slice's normalisation sees, so it comes first, on the whole slice.
        device_look = [RandDeviceStyle(0.5, normalization)] if appearance and normalization is not None else []
        steps = [
            *device_look,
            mt.RandSpatialCropd(keys, roi_size=crop, random_size=False),
            *([mt.RandFlipd(keys, prob=0.5, spatial_axis=1)] if flip else []),
            mt.RandAffined(
                keys,
                prob=0.5,
                rotate_range=0.12,
                scale_range=(0.15, 0.15),
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
            *intensity,
        ]
        self.transform = mt.Compose(steps).set_random_state(seed=seed)  # its own generator, not numpy's global

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.transform({"image": self.images[index][None], "label": self.labels[index][None]})
        return torch.as_tensor(sample["image"]).float(), torch.as_tensor(sample["label"])[0].long()


def model_slices(
    scans: list[Scan], normalization: dict[str, Any], input_spacing: list[float] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised image slices and their labels; with `input_spacing` (a base model's), resampled to it as
    inference will resample the scans this model meets (scans of unknown spacing stay as they are)."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for scan in scans:
        grid = spacing_grid(scan.image.shape[1:], scan.pixel_spacing, input_spacing)
        images.extend(resample_image(image, grid) for image in normalize_slices(scan.image, normalization))
        labels.extend(resample_labels(label, grid) for label in scan.labels)
    return images, labels


def folder_balanced_weights(scans: list[Scan]) -> list[float]:
    """Per-slice sampling weights that give every training folder the same share of the batches.

    A few dozen corrected slices next to a large base set (or a real set next to a synthetic one) would
    otherwise be drawn too rarely to matter.
    """
    folders = [scan.folder for scan in scans for _ in range(len(scan.image))]
    counts = Counter(folders)
    return [1.0 / counts[folder] for folder in folders]


def crop_size(images: list[np.ndarray], wanted: tuple[int, int]) -> tuple[int, int]:
    """The wanted crop, shrunk to the smallest slice so every slice can give one."""
    smallest = np.min([image.shape for image in images], axis=0)
    return int(min(wanted[0], smallest[0])), int(min(wanted[1], smallest[1]))


def common_spacing(scans: list[Scan]) -> list[float] | None:
    """The in-plane spacing all training scans share (CT models resample inputs to it), else None."""
    spacings = {tuple(round(s, 3) for s in scan.pixel_spacing) if scan.pixel_spacing else None for scan in scans}
    common = spacings.pop() if len(spacings) == 1 else None
    return list(common) if common else None


@dataclass
class TrainingBatches:
    """The batches of one training run: `steps` batches per epoch drawn with replacement, by folder share."""

    loader: DataLoader
    steps: int
    crop: tuple[int, int]
    crops: AugmentedCrops
    sampling: torch.Generator
    seed: int

    def start_epoch(self, epoch: int) -> None:
        """Reseed sampling and augmentation from the run's seed and the epoch: an epoch's batches do not
        depend on the epochs before it, so a run resumed from a checkpoint draws what it would have drawn."""
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        self.sampling.manual_seed(seed)
        self.crops.transform.set_random_state(seed=seed)


def training_batches(
    train_scans: list[Scan],
    images: list[np.ndarray],
    labels: list[np.ndarray],
    crop: tuple[int, int],
    batch_size: int,
    steps_per_epoch: int | None,
    flip: bool,
    appearance: bool,
    seed: int,
    normalization: dict[str, Any] | None = None,
) -> TrainingBatches:
    """A loader of augmented crops; `seed` (the run's seed plus the process rank) drives crops and sampling.
    `appearance` and `normalization` are those of :class:`AugmentedCrops`."""
    crop = crop_size(images, crop)
    crops = AugmentedCrops(images, labels, crop, flip, appearance=appearance, seed=seed, normalization=normalization)
    steps = steps_per_epoch or max(1, len(crops) // batch_size)
    sampling = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(
        folder_balanced_weights(train_scans), replacement=True, num_samples=steps * batch_size, generator=sampling
    )
    loader = DataLoader(crops, batch_size=batch_size, sampler=sampler, drop_last=True)
    return TrainingBatches(loader, steps, crop, crops, sampling, seed)
