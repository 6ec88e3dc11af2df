"""Train a named architecture on a training set; keep the weights of the best validation epoch.

`iter_train` is a generator of `StepReport` / `EpochReport` events so the command line can draw progress bars
and a napari worker can show curves and stop between steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from torch import nn

from reseg.classes import CT_CLASSES, OCT_CLASSES, SegmentationClass
from reseg.data.dataset import Scan, TrainingSet, split_by_scan
from reseg.errors import ResegError
from reseg.evaluation.metrics import per_class_scores, summarize
from reseg.models import SegmentationNetwork, build_network
from reseg.train import distributed
from reseg.train.card import record_validation, training_record
from reseg.train.checkpoint import Checkpoint, checkpoint_path
from reseg.train.data import common_spacing, model_slices, training_batches
from reseg.train.losses import DiceCrossEntropyLoss
from reseg.zoo.cards import ModelCard
from reseg.zoo.weights import load_model, save_model

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
    # Continue from `<output_dir>/<name>.checkpoint.pt` where one exists (see reseg.train.checkpoint).
    resume: bool = False
    # The card's post-processing steps (reseg.inference.postprocessing); None: the base model's, or none.
    postprocessing: tuple[str, ...] | None = None


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


def _validate(
    network: SegmentationNetwork,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    num_classes: int,
    ignore_index: int,
    label_sets: dict[int, list[int]],
    device: torch.device,
) -> dict[str, list[float]]:
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
        raise ResegError(
            f"cannot freeze {', '.join(unknown)}: {type(network).__name__} has the parts {', '.join(available)}"
        )
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
    start = _network(config, training_set)
    if config.postprocessing is not None:
        from reseg.inference.postprocessing import check_postprocessing

        check_postprocessing(config.postprocessing, [c.name for c in start.classes], "--postprocessing")
        start.build["postprocessing"] = list(config.postprocessing)
    return start


def _network(config: TrainingConfig, training_set: TrainingSet) -> _Start:
    modality = training_set.modality if training_set.modality in DEFAULT_NORMALIZATION else "OCT"
    classes = list(training_set.classes or DEFAULT_CLASSES[modality])
    if not config.base_model:
        arguments = {**config.arguments, "num_classes": len(classes)}
        return _Start(
            build_network(config.architecture, arguments),
            {"architecture": config.architecture, "arguments": arguments},
            classes,
            modality,
            DEFAULT_NORMALIZATION[modality],
        )
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
    build = {
        "architecture": base.card.architecture,
        "arguments": base.card.arguments,
        "postprocessing": list(base.card.postprocessing),
    }
    return _Start(
        base.network,
        build,
        list(base.card.classes),
        base.card.modality,
        base.card.normalization,
        base.card.input_spacing,
    )


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
    Under torchrun every process trains (see `reseg.train.distributed`); only rank 0 validates, writes and reports.
    After every epoch `<output_dir>/<name>.checkpoint.pt` holds what the next epoch needs; with `config.resume`
    a run continues from it (removed when the run completes). Returns the network as it is after the last step.
    """
    process = distributed.join(config.device)
    tracking = get_track_meta()
    # The seed decides the initial weights; the caller's random state and MONAI's metadata tracking are theirs,
    # so both are given back when training ends (each augmentation and the sampler have generators of their own).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        set_track_meta(False)  # plain tensors: faster, and nothing downstream reads MONAI's metadata
        try:
            network = yield from _train(
                process, training_set, name, output_dir, config, description, terms, validation_set
            )
            if process.distributed:
                torch.distributed.barrier()  # the files are written before any rank goes on to use them
            return network
        finally:
            set_track_meta(tracking)
            process.leave()


def train_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    network: SegmentationNetwork,
    loss_function: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> float:
    """One optimisation step: forward through `model` (the network, or its distributed wrapper), the loss plus
    the network's auxiliary loss (L2GNet's codebook), backward and update. Returns the loss."""
    loss = loss_function(model(images), labels) + network.auxiliary_loss()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


@dataclass
class _Slices:
    """The slices of one run, on the model's grid: training scans and held-out validation scans."""

    train_scans: list[Scan]
    validation_scans: list[Scan]
    train_images: list[np.ndarray]
    train_labels: list[np.ndarray]
    validation_images: list[np.ndarray]
    validation_labels: list[np.ndarray]


def _slices(
    config: TrainingConfig, training_set: TrainingSet, validation_set: TrainingSet | None, start: _Start
) -> _Slices:
    """Split by scan (or take the given validation set) and bring every slice to the model's input."""
    if validation_set is not None:
        train_scans, validation_scans = training_set.scans, validation_set.scans
    else:
        train_scans, validation_scans = split_by_scan(training_set.scans, config.validation_fraction, config.seed)
    if not validation_scans:
        raise ResegError(
            f"validation needs a scan of its own: the training data has {len(training_set.scans)} scan(s); "
            "give --validation-data or more scans (and a validation fraction > 0)"
        )
    train = model_slices(train_scans, start.normalization, start.input_spacing)
    validation = model_slices(validation_scans, start.normalization, start.input_spacing)
    return _Slices(train_scans, validation_scans, *train, *validation)


def _new_card(
    name: str,
    start: _Start,
    config: TrainingConfig,
    training_set: TrainingSet,
    validation_set: TrainingSet | None,
    slices: _Slices,
    crop: tuple[int, int],
    processes: int,
    description: str,
    terms: str,
) -> ModelCard:
    """The card as it is before the first validation: what the model is, and what it is trained on and how."""
    common = common_spacing(slices.train_scans) if start.modality == "CT" else None
    return ModelCard(
        name=name,
        **start.build,
        classes=start.classes,
        modality=start.modality,
        normalization=start.normalization,
        input_spacing=start.input_spacing or common,
        description=description,
        terms=terms,
        parent=config.base_model,
        deviations=list(start.network.card_notes),
        training=training_record(
            training_set.sources,
            validation_set.sources if validation_set is not None else "held out from data",
            [s.name for s in slices.train_scans],
            [s.name for s in slices.validation_scans],
            len(slices.train_images),
            len(slices.validation_images),
            training_set.label_sets,
            {**asdict(config), "crop_size": list(crop)},
            processes,
        ),
    )


def _optimiser(
    network: SegmentationNetwork, config: TrainingConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the parameters that train, with a one-cycle learning rate over the whole run."""
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    return optimizer, scheduler


def _train(
    process: distributed.ProcessGroup,
    training_set: TrainingSet,
    name: str,
    output_dir: str | Path,
    config: TrainingConfig,
    description: str,
    terms: str,
    validation_set: TrainingSet | None,
) -> Generator[StepReport | EpochReport, None, SegmentationNetwork]:
    start = _start(config, training_set)
    slices = _slices(config, training_set, validation_set, start)
    flip = config.lateral_flip if config.lateral_flip is not None else start.modality == "OCT"
    batches = training_batches(  # each rank draws batches of its own
        slices.train_scans,
        slices.train_images,
        slices.train_labels,
        config.crop_size,
        config.batch_size,
        config.steps_per_epoch,
        flip,
        appearance=start.modality == "OCT",
        seed=config.seed + process.rank,
        normalization=start.normalization if start.modality == "OCT" else None,
    )
    device = process.device(config.device)
    network = start.network
    frozen = freeze(network, config.freeze)
    # ~25 % faster convolutions on CPU. Module.to takes memory_format (documented); its type stubs do not.
    network.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    _set_training_mode(network, frozen)
    trained = process.wrap(network, device)
    optimizer, scheduler = _optimiser(network, config, batches.steps)
    loss_function = DiceCrossEntropyLoss(ignore_index=training_set.ignore_index, label_sets=training_set.label_sets)
    card = _new_card(
        name, start, config, training_set, validation_set, slices, batches.crop, process.world_size, description, terms
    )
    settings = {**asdict(config), "crop_size": list(batches.crop)}
    train_scans = [scan.name for scan in slices.train_scans]
    checkpoint = checkpoint_path(output_dir, name)
    first_epoch, best_score = 1, -math.inf
    if config.resume and checkpoint.exists():
        state = Checkpoint.load(checkpoint)
        state.check_matches(checkpoint, settings, train_scans)
        network.load_state_dict(state.network)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        torch.set_rng_state(state.torch_random_state)
        card = ModelCard.from_dict(state.card, checkpoint)
        first_epoch, best_score = state.epoch + 1, state.best_score
    for epoch in range(first_epoch, config.epochs + 1):
        started, losses = time.perf_counter(), []
        batches.start_epoch(epoch)
        for step, (images, labels) in enumerate(batches.loader, start=1):
            images, labels = images.to(device, memory_format=torch.channels_last), labels.to(device)
            losses.append(train_step(trained, network, loss_function, optimizer, images, labels))
            scheduler.step()
            if process.is_main:
                yield StepReport(epoch, step, batches.steps, losses[-1])
        process.synchronize_buffers(network)
        if not process.is_main:
            continue
        scores = _validate(
            network,
            slices.validation_images,
            slices.validation_labels,
            len(start.classes),
            training_set.ignore_index,
            (validation_set or training_set).label_sets,
            device,
        )
        _set_training_mode(network, frozen)
        summary = summarize(scores, skip_classes=(0,))
        is_best = summary["mean_dice"] > best_score or not math.isfinite(best_score)
        if is_best or not config.keep_best:
            best_score = max(best_score, summary["mean_dice"])
            record_validation(card, epoch, config.keep_best, summary, scores, start.classes)
            save_model(network, card, output_dir)
        Checkpoint(
            epoch,
            settings,
            train_scans,
            {key: value.detach().cpu() for key, value in network.state_dict().items()},
            optimizer.state_dict(),
            scheduler.state_dict(),
            torch.get_rng_state(),
            best_score,
            card.to_dict(),
        ).save(checkpoint)
        seconds = time.perf_counter() - started
        yield EpochReport(epoch, config.epochs, float(np.mean(losses)), summary, scores["dice"], is_best, seconds)
    if process.is_main:
        checkpoint.unlink(missing_ok=True)
    return network
