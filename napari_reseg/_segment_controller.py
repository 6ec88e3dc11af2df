"""What the Segment widget decides and remembers, without Qt or a viewer: which model suits a scan, what a run
computes, what must be asked before it starts, and the run's state from start to end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from reseg.errors import ResegError
from reseg.zoo.catalogue import modality_warning, model_paths, preferred_model, resolve_card, suits

from ._layer_state import LabelsRecord, ScanRecord

if TYPE_CHECKING:
    from reseg.zoo.cards import ModelCard


class Phase(Enum):
    IDLE = "idle"
    LOADING = "loading"  # the engine process loads the model (and torch, on the first run)
    RUNNING = "running"
    CANCELLING = "cancelling"


@dataclass
class RunPlan:
    """What one run computes and where it writes: fixed at start, whatever the user selects afterwards."""

    scan: ScanRecord
    scan_name: str
    model_ref: str  # a catalogue name, or the weights path of a loaded checkpoint
    card: ModelCard
    device: str
    batch_size: int  # 0: the engine chooses for the device
    slices: list[int]
    n_slices: int
    raw: bool = False  # the network's argmax without the card's post-processing
    with_confidence: bool = False
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    device_used: str = ""
    batch_size_used: int = 0
    batch_size_first: int = 0  # what the engine started with (the plan's, or its own choice)


def has_user_edits(record: LabelsRecord | None, data: np.ndarray, slices: list[int]) -> bool:
    """True when a labels layer holds work a run would replace: it differs from the last prediction on one of
    `slices`, or it has labels and no prediction at all (labels opened from a file, or painted by hand)."""
    stack = data if data.ndim == 3 else data[None]
    if record is None or record.prediction is None:
        return any(stack[z].any() for z in slices)
    predicted = record.prediction
    return any(not np.array_equal(stack[z], predicted[z]) for z in slices)


class SegmentController:
    """Model choice, run planning, questions before a run, and the run's phase and status text."""

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.run: RunPlan | None = None
        self.checkpoints: dict[str, tuple[ModelCard, str]] = {}  # picker label -> (card, weights path)

    # --- models ----------------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Catalogue models (sorted) and loaded checkpoints, as the picker lists them."""
        return sorted(model_paths()) + list(self.checkpoints)

    def card_of(self, label: str) -> tuple[str, ModelCard]:
        """(model reference for the engine, card) of a picker entry; an unknown one is a ResegError."""
        if label in self.checkpoints:
            card, weights = self.checkpoints[label]
            return weights, card
        return label, resolve_card(label)[0]

    def add_checkpoint(self, path: str) -> str:
        """Make a checkpoint (with its card beside it) choosable; returns its picker label."""
        card, weights = resolve_card(path)
        label = f"{card.name} ({weights.name})"
        self.checkpoints[label] = (card, str(weights))
        return label

    def suits(self, label: str, scan_modality: str) -> bool:
        """Whether the picker entry's model is meant for a scan of this modality (False if it cannot be read)."""
        try:
            return suits(self.card_of(label)[1].modality, scan_modality)
        except ResegError:
            return False

    def preselect(self, scan_modality: str) -> str | None:
        """The model to preselect for a scan: never one trained on another modality (None if all are)."""
        modalities = {}
        for label in self.model_names():
            try:
                modalities[label] = self.card_of(label)[1].modality
            except ResegError:
                continue  # a broken user card is left out of the choice; choosing it reports the cause
        return preferred_model(list(modalities), modalities, scan_modality)

    # --- planning and questions ------------------------------------------------------------------------

    def plan(
        self,
        scan: ScanRecord,
        scan_name: str,
        model_label: str,
        device: str,
        batch_size: int,
        current_slice: int | None,
        raw: bool,
        with_confidence: bool,
        on_screen: int | None = None,
    ) -> RunPlan:
        """The run to start; `current_slice` limits it to the slice on screen, otherwise the whole scan runs
        starting with `on_screen`. Raises ResegError for what cannot run (a busy widget, an unknown model)."""
        if self.phase is not Phase.IDLE:
            raise ResegError("a segmentation is already running; cancel it or wait for it to finish")
        model_ref, card = self.card_of(model_label)
        n_slices = scan.geometry.data.shape[0]
        if current_slice is not None:
            slices = [current_slice]
        else:  # the slice on screen first: its labels appear while the others are computed
            first = on_screen if on_screen is not None and 0 <= on_screen < n_slices else 0
            slices = [first, *(z for z in range(n_slices) if z != first)]
        return RunPlan(
            scan,
            scan_name,
            model_ref,
            card,
            device,
            batch_size,
            slices,
            n_slices,
            raw=raw,
            with_confidence=with_confidence,
        )

    @staticmethod
    def modality_question(plan: RunPlan) -> str | None:
        """The warning to confirm before running a model on a scan of another modality, or None."""
        warning = modality_warning(plan.card, plan.scan.modality, plan.scan_name)
        return f"{warning}. Run it anyway?" if warning else None

    @staticmethod
    def overwrite_question(plan: RunPlan, layer_name: str, record: LabelsRecord | None, data: np.ndarray) -> str | None:
        """The question to confirm before a run replaces edits in the target layer, or None."""
        if not has_user_edits(record, data, plan.slices):
            return None
        scope = "the slice it computes" if len(plan.slices) == 1 else f"the {len(plan.slices)} slices it computes"
        return (
            f"Layer {layer_name!r} has labels that differ from the model's last prediction (your edits). "
            f"Running {plan.card.name} replaces them on {scope}. Continue?"
        )

    # --- the run ---------------------------------------------------------------------------------------

    def started(self, plan: RunPlan) -> str:
        self.run, self.phase = plan, Phase.LOADING
        return f"loading {plan.card.name}..."

    def progressed(self, done: int, device: str, batch_size: int) -> str:
        run = self.run
        assert run is not None, "progress of a run that was not started"
        run.device_used, run.batch_size_used = device, batch_size or run.batch_size_used
        run.batch_size_first = run.batch_size_first or (batch_size if done else 0)
        if not done:
            self.phase = Phase.RUNNING if self.phase is Phase.LOADING else self.phase
            return f"{run.card.name} loaded on {device}; segmenting..."
        run.done = done
        return f"{run.card.name} on {device}: {done} / {len(run.slices)} slices"

    def cancel(self) -> str | None:
        if self.phase in (Phase.IDLE, Phase.CANCELLING):
            return None
        self.phase = Phase.CANCELLING
        return "cancelling after the current batch..."

    def finished(self) -> str:
        run = self.run
        assert run is not None, "end of a run that was not started"
        seconds = time.perf_counter() - run.started
        lowered = run.batch_size_used and run.batch_size_used < (run.batch_size or run.batch_size_first)
        note = f" (batch size lowered to {run.batch_size_used} after running out of memory)" if lowered else ""
        return f"{run.card.name} ran on {run.device_used}: {len(run.slices)} slice(s) in {seconds:.1f} s{note}"

    def cancelled(self) -> str:
        run = self.run
        assert run is not None, "end of a run that was not started"
        return f"cancelled after {run.done} / {len(run.slices)} slices; finished slices are kept"

    def failed(self, error: Exception) -> str:
        run = self.run
        assert run is not None, "failure of a run that was not started"
        cause = str(error) if isinstance(error, ResegError) else f"{type(error).__name__}: {error}"
        return f"segmenting {run.scan_name!r} with {run.card.name} failed: {cause}"

    def ended(self) -> None:
        self.phase = Phase.IDLE
