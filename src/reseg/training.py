"""Train a registered architecture on a training set; keep the weights of the best validation epoch.

`iter_train` is a generator of `StepReport` / `EpochReport` events so the command line can draw progress bars
and a napari worker can show curves and stop between steps.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generator, Sequence

import numpy as np
import torch
from monai import transforms as mt
from monai.data import get_track_meta, set_track_meta
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import distributed
from .cards import ModelCard
from .classes import CT_CLASSES, OCT_CLASSES, SegmentationClass
from .data.dataset import Scan, TrainingSet, split_by_scan
from .errors import ResegError
from .losses import DiceCrossEntropyLoss
from .metrics import per_class_scores, summarize
from .models import SegmentationNetwork, build_network
from .normalization import normalize_slices
from .resampling import resample_image, resample_labels, spacing_grid
from .zoo import load_model, save_model

DEFAULT_NORMALIZATION = {
    "OCT": {"method": "percentile", "lower": 1.0, "upper": 99.0},
    "CT": {"method": "window", "low": -175.0, "high": 250.0},  # the abdominal window used for Synapse
}
DEFAULT_CLASSES = {"OCT": OCT_CLASSES, "CT": CT_CLASSES}


@dataclass
class TrainingConfig:
    architecture: str = "lightreseg"
    arguments: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    crop_size: tuple[int, int] = (256, 256)
    steps_per_epoch: int | None = None
    validation_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    lateral_flip: bool | None = None  # None: on for OCT (mirror-symmetric), off for CT (left/right organs)
    base_model: str | None = None
    # True: keep the epoch that scores best on validation. False: keep the last epoch, for when the validation
    # scans are also the test of the result (fine-tuning compares old and new on them) and must not select it.
    keep_best: bool = True
    freeze: tuple[str, ...] = ()  # top-level parts of the network not to train, e.g. ("encoder",)


@dataclass(frozen=True)
class StepReport:
    epoch: int
    step: int
    steps: int
    loss: float


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    validation: dict[str, float]
    per_class_dice: list[float]
    is_best: bool
    seconds: float


class _RandomCrops(Dataset):
    """Normalised training slices, augmented and cropped to a fixed size on every access."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], crop: tuple[int, int], flip: bool,
                 appearance: bool, seed: int):
        self.images, self.labels = images, labels
        keys = ("image", "label")
        steps = [
            mt.RandSpatialCropd(keys, roi_size=crop, random_size=False),
            mt.RandAffined(keys, prob=0.5, rotate_range=0.12, scale_range=(0.15, 0.15), mode=("bilinear", "nearest"),
                           padding_mode="border"),
            mt.RandScaleIntensityd("image", factors=0.2, prob=0.5),
            mt.RandAdjustContrastd("image", gamma=(0.5, 2.0) if appearance else (0.7, 1.5), prob=0.5),
            mt.RandGaussianNoised("image", std=0.05, prob=0.3),
        ]
        if appearance:
            # Devices, exports and eyes differ in gain across the frame, depth fall-off, speckle averaging and
            # grey-level mapping; randomising these keeps a model from learning one source's look as anatomy.
            steps[3:3] = [
                mt.RandBiasFieldd("image", degree=3, coeff_range=(0.0, 0.3), prob=0.5),
                mt.RandGaussianSmoothd("image", sigma_x=(0.25, 1.5), sigma_y=(0.25, 1.5), prob=0.3),
                mt.RandHistogramShiftd("image", num_control_points=(5, 10), prob=0.3),
            ]
        if flip:
            steps.insert(1, mt.RandFlipd(keys, prob=0.5, spatial_axis=1))
        self.transform = mt.Compose(steps).set_random_state(seed=seed)  # its own generator, not numpy's global

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.transform({"image": self.images[index][None], "label": self.labels[index][None]})
        return torch.as_tensor(sample["image"]).float(), torch.as_tensor(sample["label"])[0].long()


def _slices(scans: list[Scan], normalization: dict[str, Any],
            input_spacing: list[float] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised image slices and their labels; with `input_spacing` (a base model's), resampled to it as
    inference will resample the scans this model meets (scans of unknown spacing stay as they are)."""
    images, labels = [], []
    for scan in scans:
        grid = spacing_grid(scan.image.shape[1:], scan.pixel_spacing, input_spacing)
        images.extend(resample_image(image, grid) for image in normalize_slices(scan.image, normalization))
        labels.extend(resample_labels(label, grid) for label in scan.labels)
    return images, labels


def _folder_balanced_weights(scans: list[Scan]) -> list[float]:
    """Per-slice sampling weights that give every training folder the same share of the batches.

    A few dozen corrected slices next to a large base set (or a real set next to a synthetic one) would
    otherwise be drawn too rarely to matter.
    """
    folders = [scan.folder for scan in scans for _ in range(len(scan.image))]
    counts = Counter(folders)
    return [1.0 / counts[folder] for folder in folders]


def _crop_size(images: list[np.ndarray], wanted: tuple[int, int]) -> tuple[int, int]:
    smallest = np.min([image.shape for image in images], axis=0)
    return int(min(wanted[0], smallest[0])), int(min(wanted[1], smallest[1]))


def _json_number(value: float) -> float | None:
    """Metrics rounded for the card; NaN (class absent from the validation data) becomes JSON null."""
    return None if math.isnan(value) else round(value, 4)


def _training_spacing(scans: list[Scan]) -> list[float] | None:
    """The in-plane spacing all training scans share (CT models resample inputs to it), else None."""
    spacings = {tuple(round(s, 3) for s in scan.pixel_spacing) if scan.pixel_spacing else None for scan in scans}
    common = spacings.pop() if len(spacings) == 1 else None
    return list(common) if common else None


def _validate(network: SegmentationNetwork, images: list[np.ndarray], labels: list[np.ndarray],
              num_classes: int, ignore_index: int, label_sets: dict[int, list[int]],
              device: torch.device) -> dict[str, list[float]]:
    network.eval()
    predictions = []
    with torch.inference_mode():
        for image in images:
            logits = network(torch.from_numpy(image)[None, None].to(device))
            predictions.append(logits.argmax(1)[0].to(torch.uint8).cpu().numpy())
    return per_class_scores(np.stack(predictions), np.stack(labels), num_classes, ignore_index, label_sets)


def freeze(network: SegmentationNetwork, parts: Sequence[str]) -> list[nn.Module]:
    """Stop training the named parts: no gradient, and their normalisation statistics stay as they are."""
    available = network.parts()
    unknown = [part for part in parts if part not in available]
    if unknown:
        raise ResegError(f"cannot freeze {', '.join(unknown)}: {type(network).__name__} has the parts "
                         f"{', '.join(available)}")
    if set(parts) == set(available):
        raise ResegError("freezing every part leaves nothing to train")
    modules = [getattr(network, part) for part in parts]
    for module in modules:
        module.requires_grad_(False)
    return modules


def _set_training_mode(network: SegmentationNetwork, frozen: list[nn.Module]) -> None:
    network.train()
    for module in frozen:
        module.eval()


@dataclass
class _Start:
    """What training starts from: a new network, or a base model whose classes and input handling it keeps."""

    network: SegmentationNetwork
    build: dict[str, Any]
    classes: list[SegmentationClass]
    modality: str
    normalization: dict[str, Any]
    input_spacing: list[float] | None = None


def _start(config: TrainingConfig, training_set: TrainingSet) -> _Start:
    modality = training_set.modality if training_set.modality in DEFAULT_NORMALIZATION else "OCT"
    classes = list(training_set.classes or DEFAULT_CLASSES[modality])
    if not config.base_model:
        arguments = {**config.arguments, "num_classes": len(classes)}
        return _Start(build_network(config.architecture, arguments),
                      {"architecture": config.architecture, "arguments": arguments},
                      classes, modality, DEFAULT_NORMALIZATION[modality])
    base = load_model(config.base_model, device="cpu")
    if training_set.classes and [c.name for c in training_set.classes] != base.card.class_names:
        raise ResegError(
            f"base model {config.base_model!r} has the classes {', '.join(base.card.class_names)}; the training "
            f"data has {', '.join(c.name for c in training_set.classes)}"
        )
    if base.card.num_classes != len(classes):
        raise ResegError(
            f"base model {config.base_model!r} has {base.card.num_classes} classes, the data has {len(classes)}"
        )
    build = {"architecture": base.card.architecture, "arguments": base.card.arguments,
             "postprocessing": list(base.card.postprocessing)}
    return _Start(base.network, build,
                  list(base.card.classes), base.card.modality, base.card.normalization, base.card.input_spacing)


def iter_train(
    training_set: TrainingSet,
    name: str,
    output_dir: str | Path,
    config: TrainingConfig,
    description: str = "",
    terms: str = "",
    validation_set: TrainingSet | None = None,
) -> Generator[StepReport | EpochReport, None, SegmentationNetwork]:
    """Train, validate after every epoch and save the kept epoch as `<output_dir>/<name>.safetensors` + card.

    The card is complete (classes, normalisation, training data and settings, validation metrics) after the
    first epoch and rewritten whenever the kept epoch changes (validation improved, or every epoch when
    `config.keep_best` is False), so a run that is stopped early keeps what it has.
    Validation uses `validation_set` if given, else a share of `training_set` held out by scan.
    Under torchrun every process trains (see `reseg.distributed`); only rank 0 validates, writes and reports.
    Returns the network as it is after the last step.
    """
    process = distributed.join(config.device)
    tracking = get_track_meta()
    # The seed decides the initial weights; the caller's random state and MONAI's metadata tracking are theirs,
    # so both are given back when training ends (each augmentation and the sampler have generators of their own).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        set_track_meta(False)  # plain tensors: faster, and nothing downstream reads MONAI's metadata
        try:
            network = yield from _train(process, training_set, name, output_dir, config, description, terms,
                                        validation_set)
            if process.distributed:
                torch.distributed.barrier()  # the files are written before any rank goes on to use them
            return network
        finally:
            set_track_meta(tracking)
            process.leave()


def _train(process: distributed.ProcessGroup, training_set: TrainingSet, name: str, output_dir: str | Path,
           config: TrainingConfig, description: str, terms: str, validation_set: TrainingSet | None
           ) -> Generator[StepReport | EpochReport, None, SegmentationNetwork]:
    start = _start(config, training_set)
    modality, classes, normalization = start.modality, start.classes, start.normalization
    if validation_set is not None:
        train_scans, validation_scans = training_set.scans, validation_set.scans
    else:
        train_scans, validation_scans = split_by_scan(training_set.scans, config.validation_fraction, config.seed)
    if not validation_scans:
        raise ResegError(
            f"validation needs a scan of its own: the training data has {len(training_set.scans)} scan(s); "
            "give --validation-data or more scans (and a validation fraction > 0)"
        )
    train_images, train_labels = _slices(train_scans, normalization, start.input_spacing)
    validation_images, validation_labels = _slices(validation_scans, normalization, start.input_spacing)
    flip = config.lateral_flip if config.lateral_flip is not None else modality == "OCT"
    crop = _crop_size(train_images, config.crop_size)
    crops = _RandomCrops(train_images, train_labels, crop, flip, appearance=modality == "OCT",
                         seed=config.seed + process.rank)
    steps = config.steps_per_epoch or max(1, len(crops) // config.batch_size)
    sampler = torch.utils.data.WeightedRandomSampler(  # each rank draws batches of its own
        _folder_balanced_weights(train_scans), replacement=True, num_samples=steps * config.batch_size,
        generator=torch.Generator().manual_seed(config.seed + process.rank),
    )
    loader = DataLoader(crops, batch_size=config.batch_size, sampler=sampler, drop_last=True)

    device = process.device(config.device)
    network = start.network
    frozen = freeze(network, config.freeze)
    network.to(device, memory_format=torch.channels_last)  # ~25 % faster convolutions on CPU
    _set_training_mode(network, frozen)
    trained = process.wrap(network, device)
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps, pct_start=0.1
    )
    loss_function = DiceCrossEntropyLoss(ignore_index=training_set.ignore_index, label_sets=training_set.label_sets)
    validation_label_sets = (validation_set or training_set).label_sets
    card = ModelCard(
        name=name, **start.build, classes=classes, modality=modality, normalization=normalization,
        input_spacing=start.input_spacing or (_training_spacing(train_scans) if modality == "CT" else None),
        description=description, terms=terms, parent=config.base_model, deviations=list(network.card_notes),
        training={
            "data": training_set.sources,
            "validation_data": validation_set.sources if validation_set is not None else "held out from data",
            "train_scans": [s.name for s in train_scans],
            "validation_scans": [s.name for s in validation_scans],
            "train_slices": len(train_images),
            "validation_slices": len(validation_images),
            "label_sets": {str(value): classes for value, classes in training_set.label_sets.items()},
            "config": {**asdict(config), "crop_size": list(crop)},
            "processes": process.world_size,
        },
    )
    best_score = -math.inf
    for epoch in range(1, config.epochs + 1):
        started, losses = time.perf_counter(), []
        for step, (images, labels) in enumerate(loader, start=1):
            images, labels = images.to(device, memory_format=torch.channels_last), labels.to(device)
            loss = loss_function(trained(images), labels) + network.auxiliary_loss()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if process.is_main:
                yield StepReport(epoch, step, steps, losses[-1])
        process.synchronize_buffers(network)
        if not process.is_main:
            continue
        scores = _validate(network, validation_images, validation_labels, len(classes),
                           training_set.ignore_index, validation_label_sets, device)
        _set_training_mode(network, frozen)
        summary = summarize(scores, skip_classes=(0,))
        is_best = summary["mean_dice"] > best_score or not math.isfinite(best_score)
        if is_best or not config.keep_best:
            best_score = max(best_score, summary["mean_dice"])
            card.training["best_epoch" if config.keep_best else "last_epoch"] = epoch
            card.metrics = {
                "validation": {
                    **{key: _json_number(value) for key, value in summary.items()},
                    "per_class_dice": {c.name: _json_number(d) for c, d in zip(classes, scores["dice"])},
                    "per_class_iou": {c.name: _json_number(d) for c, d in zip(classes, scores["iou"])},
                    "note": "mean over classes 1..K-1 (class 0 excluded); slices of the validation scans; "
                    "null: class absent from the validation labels",
                }
            }
            save_model(network, card, output_dir)
        yield EpochReport(epoch, config.epochs, float(np.mean(losses)), summary, scores["dice"], is_best,
                          time.perf_counter() - started)
    return network
