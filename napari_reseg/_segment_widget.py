"""The Segment dock widget: pick a scan, a model and a device, run, watch the labels appear, cancel.

Inference runs in a napari thread worker that yields after every batch, so the event loop stays free; each
batch is written straight into the labels layer's own array and that layer is refreshed. The layers a run
writes to are fixed when it starts, so selecting or opening other layers meanwhile changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from reseg.cards import ModelCard
from reseg.devices import available_devices
from reseg.errors import ResegError
from reseg.io import as_stack
from reseg.zoo import model_paths, resolve_card

from ._layers import labels_layer_kwargs
from ._model_events import model_registry_events

if TYPE_CHECKING:
    import napari

LOAD_CHECKPOINT = "Load checkpoint..."
WHOLE_VOLUME, CURRENT_SLICE = "whole volume", "current slice"


@dataclass
class SegmentationRun:
    """What one run computes and where it writes: fixed at start, whatever the user selects afterwards."""

    image: Image
    labels: Labels
    confidence: Image | None
    model_ref: str
    card: ModelCard
    device: str
    batch_size: int
    slices: list[int]
    slice_confidence: np.ndarray  # (Z,) mean confidence per slice, kept on the labels layer for review
    raw: bool = False  # the network's argmax without the card's post-processing
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    device_used: str = ""
    batch_size_used: int = 0


def _run_inference(run: SegmentationRun, volume: np.ndarray, pixel_spacing) -> Iterator[int]:
    """Worker body (a thread): load the model, then segment batch by batch into the layers' arrays."""
    from reseg.inference import iter_segment  # torch is imported on first use, not at napari start-up
    from reseg.zoo import load_model

    model = load_model(run.model_ref, device=run.device)
    run.device_used = str(model.device)
    labels = as_stack(run.labels.data)
    confidence = as_stack(run.confidence.data) if run.confidence is not None else None
    yield 0
    for progress in iter_segment(model, volume, labels, confidence_out=confidence,
                                 slice_confidence_out=run.slice_confidence, batch_size=run.batch_size,
                                 slices=run.slices, pixel_spacing=pixel_spacing, raw=run.raw):
        run.done, run.batch_size_used = progress.done, progress.batch_size
        yield progress.done


def _image_stack(layer: Image) -> np.ndarray:
    """The layer's pixels as a (Z, H, W) array (a single B-scan gets Z = 1), refusing what cannot be segmented."""
    data = layer.data[0] if layer.multiscale else layer.data
    if layer.rgb:
        raise ResegError(f"layer {layer.name!r} is RGB; the models segment greyscale scans")
    array = np.asarray(data)
    if array.ndim not in (2, 3):
        raise ResegError(f"layer {layer.name!r} is {array.ndim}-D; expected a 2-D image or a 3-D stack")
    return as_stack(array)


def _pixel_spacing(layer: Image) -> tuple[float, float] | None:
    """In-plane spacing (mm) when the file recorded it, for models trained at a fixed spacing."""
    known = layer.metadata.get("reseg", {}).get("spacing_known")
    return tuple(float(s) for s in layer.scale[-2:]) if known and all(known[-2:]) else None


class SegmentWidget(QWidget):
    """Dock widget that runs a bundled or user model on an image layer and shows the result as labels."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: GeneratorWorker | None = None
        self.run: SegmentationRun | None = None
        self.checkpoints: dict[str, tuple[ModelCard, Path]] = {}
        self.legend_for: tuple[Labels, ModelCard] | None = None
        # Replaced in tests: asks before a run overwrites labels the user has edited.
        self.confirm_overwrite: Callable[[Labels], bool] = self._ask_overwrite

        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.device_combo = QComboBox()
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([WHOLE_VOLUME, CURRENT_SLICE])
        self.confidence_check = QCheckBox("add a confidence layer (dark = doubtful)")
        self.postprocess_check = QCheckBox("apply the model's post-processing")
        self.postprocess_check.setChecked(True)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.legend = QTableWidget(0, 3)
        self.legend.setHorizontalHeaderLabels(["", "class", "voxels"])
        self.legend.verticalHeader().setVisible(False)
        self.legend.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.legend.setEditTriggers(QTableWidget.NoEditTriggers)
        self.legend.setColumnWidth(0, 18)
        self.legend.setMinimumHeight(140)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_combo)
        form.addRow("device", self.device_combo)
        form.addRow("batch size", self.batch_spin)
        form.addRow("scope", self.scope_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.confidence_check)
        layout.addWidget(self.postprocess_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addWidget(self.legend)

        self._fill_models()
        self._fill_devices()
        self._fill_images()
        self.model_combo.activated.connect(self._on_model_chosen)
        self.model_combo.currentIndexChanged.connect(self._show_postprocessing)
        self._show_postprocessing()
        model_registry_events().changed.connect(self._fill_models)  # a model kept or removed elsewhere
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.moved):
            event.connect(self._fill_images)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)

    # --- pickers ---------------------------------------------------------------------------------------

    def _fill_images(self, event=None) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb
                 and not layer.metadata.get("reseg", {}).get("confidence_of")]
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        elif event is not None and names and getattr(event, "value", None) in self.viewer.layers:
            if getattr(event.value, "name", None) in names:
                self.image_combo.setCurrentText(event.value.name)

    def _follow_selection(self, event=None) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and self.image_combo.findText(active.name) >= 0:
            self.image_combo.setCurrentText(active.name)

    def _fill_models(self) -> None:
        """List the registry's models (as they are now), loaded checkpoints, and the load entry; keep the choice."""
        chosen = self.model_combo.currentText()
        self.model_combo.clear()
        self.model_combo.addItems(sorted(model_paths()))
        for label in self.checkpoints:
            self.model_combo.addItem(label)
        self.model_combo.addItem(LOAD_CHECKPOINT)
        if self.model_combo.findText(chosen) >= 0 and chosen != LOAD_CHECKPOINT:
            self.model_combo.setCurrentText(chosen)

    def _fill_devices(self) -> None:
        devices = available_devices()
        self.device_combo.addItem(f"auto ({devices[0]})", "auto")
        for name in devices:
            self.device_combo.addItem(name, name)

    def _show_postprocessing(self) -> None:
        """Offer the post-processing switch only for models whose card lists steps, and say what they do."""
        try:
            steps = self._selected_model()[1].postprocessing
        except ResegError:
            steps = []
        self.postprocess_check.setVisible(bool(steps))
        self.postprocess_check.setToolTip(
            f"{', '.join(steps)}: applied to the labels after the network (see the model card); untick to see "
            "the network's own output" if steps else "")

    def _on_model_chosen(self, index: int) -> None:
        if self.model_combo.itemText(index) != LOAD_CHECKPOINT:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth *.json)")
        if path:
            self.add_checkpoint(path)
        else:
            self.model_combo.setCurrentIndex(0)

    def add_checkpoint(self, path: str | Path) -> None:
        """Make a checkpoint file (with its card beside it) selectable; a bad one is refused with the cause."""
        try:
            card, weights = resolve_card(path)
        except ResegError as error:
            show_error(str(error))
            self.model_combo.setCurrentIndex(0)
            return
        label = f"{card.name} ({Path(path).name})"
        self.checkpoints[label] = (card, weights)
        self._fill_models()
        self.model_combo.setCurrentText(label)

    # --- running ---------------------------------------------------------------------------------------

    def _selected_model(self) -> tuple[str, ModelCard]:
        label = self.model_combo.currentText()
        if label in self.checkpoints:
            card, weights = self.checkpoints[label]
            return str(weights), card
        return label, resolve_card(label)[0]

    def _labels_for(self, image: Image, card: ModelCard, shape: tuple[int, ...]) -> Labels:
        """The labels layer that belongs to `image` (made on first run, reused after), sized and coloured."""
        kwargs = labels_layer_kwargs(card.classes, image.scale, f"{image.name} labels", units=image.units)
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and layer.metadata.get("reseg", {}).get("image") is image:
                if layer.data.shape == shape:
                    layer.colormap, layer.features = kwargs["colormap"], kwargs["features"]
                    return layer
        kwargs["metadata"] = {"reseg": {"image": image, "model": card.name}}
        layer = self.viewer.add_labels(np.zeros(shape, dtype=np.uint8), **kwargs)
        layer.events.paint.connect(self._on_paint)
        return layer

    @staticmethod
    def has_user_edits(labels: Labels, slices: list[int]) -> bool:
        """True when the layer differs from the model's last prediction on any of `slices`."""
        prediction = labels.metadata.get("reseg", {}).get("prediction")
        if prediction is None:
            return False
        data, predicted = as_stack(labels.data), as_stack(prediction)
        return any(not np.array_equal(data[z], predicted[z]) for z in slices)

    def _ask_overwrite(self, labels: Labels) -> bool:
        answer = QMessageBox.question(
            self, "Overwrite edits?",
            f"Layer {labels.name!r} has edits that differ from the model's prediction. "
            "Running again replaces them on the slices it computes. Continue?",
        )
        return answer == QMessageBox.Yes

    def start(self) -> GeneratorWorker | None:
        """Run the chosen model on the chosen image; returns the worker (None if nothing started)."""
        if self.worker is not None:
            return None
        try:
            image = self.viewer.layers[self.image_combo.currentText()]
            volume = _image_stack(image)
            model_ref, card = self._selected_model()
        except (KeyError, ValueError):
            show_warning("napari-reseg: open a greyscale image layer to segment first")
            return None
        except ResegError as error:
            show_error(str(error))
            return None
        slices = list(range(len(volume)))
        if self.scope_combo.currentText() == CURRENT_SLICE and image.ndim == 3:
            slices = [int(self.viewer.dims.current_step[self.viewer.dims.ndim - 3])]
        labels = self._labels_for(image, card, image.data.shape if not image.multiscale else volume.shape)
        if self.has_user_edits(labels, slices) and not self.confirm_overwrite(labels):
            return None
        confidence = self._confidence_for(image) if self.confidence_check.isChecked() else None
        slice_confidence = labels.metadata["reseg"].get("slice_confidence")
        if slice_confidence is None or len(slice_confidence) != len(volume):
            slice_confidence = np.full(len(volume), np.nan, dtype=np.float32)
        self.run = SegmentationRun(image, labels, confidence, model_ref, card, self.device_combo.currentData(),
                                   self.batch_spin.value(), slices, slice_confidence,
                                   raw=not self.postprocess_check.isChecked())
        batches = -(-len(slices) // self.run.batch_size)
        self.worker = create_worker(
            _run_inference, self.run, volume, _pixel_spacing(image),
            _progress={"total": batches + 1, "desc": f"{card.name} on {image.name}"},
            _ignore_errors=True,  # errors become a notification with the cause (_on_error), not a traceback
        )
        self.worker.yielded.connect(self._on_batch)
        self.worker.returned.connect(self._on_finished)
        self.worker.aborted.connect(self._on_cancelled)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_worker_done)
        self.progress_bar.setRange(0, len(slices))
        self.progress_bar.setValue(0)
        self.status.setText(f"loading {card.name}...")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker.start()
        return self.worker

    def _confidence_for(self, image: Image) -> Image:
        name = f"{image.name} confidence"
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and layer.metadata.get("reseg", {}).get("confidence_of") is image:
                return layer
        return self.viewer.add_image(
            np.zeros(image.data.shape, dtype=np.float32), name=name, scale=image.scale, units=image.units,
            colormap="viridis", contrast_limits=(0.0, 1.0), blending="additive", visible=True,
            metadata={"reseg": {"confidence_of": image}},
        )

    def cancel(self) -> None:
        """Stop after the batch in progress; finished slices stay, the rest keep what they had."""
        if self.worker is not None:
            self.status.setText("cancelling after the current batch...")
            self.worker.quit()

    def _on_batch(self, done: int) -> None:
        run = self.run
        self.progress_bar.setValue(done)
        if done:
            self.status.setText(f"{run.card.name} on {run.device_used}: {done} / {len(run.slices)} slices")
        else:
            self.status.setText(f"{run.card.name} loaded on {run.device_used}; segmenting...")
        run.labels.refresh()
        if run.confidence is not None:
            run.confidence.refresh()

    def _finish_layers(self) -> None:
        run = self.run
        run.labels.metadata["reseg"].update(
            prediction=np.array(run.labels.data, copy=True), model=run.card.name, card=run.card,
            slice_confidence=run.slice_confidence,
        )
        run.labels.refresh()
        self.update_legend(run.labels, run.card)

    def _on_finished(self, _=None) -> None:
        run = self.run
        self._finish_layers()
        seconds = time.perf_counter() - run.started
        note = f" (batch size lowered to {run.batch_size_used} after running out of memory)" \
            if run.batch_size_used and run.batch_size_used < run.batch_size else ""
        self.status.setText(f"{run.card.name} ran on {run.device_used}: {len(run.slices)} slice(s) "
                            f"in {seconds:.1f} s{note}")

    def _on_cancelled(self) -> None:
        run = self.run
        self._finish_layers()
        self.status.setText(f"cancelled after {run.done} / {len(run.slices)} slices")
        show_info(f"napari-reseg: segmentation of {run.image.name!r} cancelled after {run.done} / "
                  f"{len(run.slices)} slices; finished slices are kept")

    def _on_error(self, error: Exception) -> None:
        run = self.run
        cause = str(error) if isinstance(error, ResegError) else f"{type(error).__name__}: {error}"
        if "out of memory" in cause.lower():
            cause += " (even at batch size 1: choose the CPU or a smaller scope)"
        self.status.setText(f"failed: {cause}")
        show_error(f"napari-reseg: segmenting {run.image.name!r} with {run.card.name} failed: {cause}")

    def _on_worker_done(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_paint(self, event) -> None:
        if self.legend_for is not None and event.source is self.legend_for[0]:
            self.update_legend(*self.legend_for)

    def update_legend(self, labels: Labels, card: ModelCard) -> None:
        """Colour, name and voxel count of every class of the model, as the layer holds them now."""
        self.legend_for = (labels, card)
        counts = np.bincount(np.asarray(labels.data).ravel(), minlength=card.num_classes)
        self.legend.setRowCount(card.num_classes)
        for row, segmentation_class in enumerate(card.classes):
            swatch = QTableWidgetItem("")
            swatch.setBackground(QColor(*segmentation_class.color))
            count = QTableWidgetItem(f"{counts[segmentation_class.index]:,}")
            count.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
            self.legend.setItem(row, 0, swatch)
            self.legend.setItem(row, 1, QTableWidgetItem(segmentation_class.name))
            self.legend.setItem(row, 2, count)
