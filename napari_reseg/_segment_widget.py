"""The Segment dock widget: pick a scan, a model and a device, run, watch the labels appear, cancel.

The model runs in the engine process (`_engine_process`: torch never loads into napari); a worker thread
receives each batch and writes it straight into the labels layer's own array, and that layer is refreshed.
The decisions (which model suits the scan, what to ask before a run, the run's state) are
`SegmentController`'s; this module lays out the widget and connects it to napari.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import Colormap
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
)

from reseg.devices import DEVICE_CHOICES
from reseg.errors import ResegError

from ._catalogue_watch import CatalogueWatcher
from ._display import LayerTransform
from ._engine_process import EngineProcess, EngineStopped
from ._layer_state import (
    DerivedImageRecord,
    LabelsRecord,
    find_derived,
    find_run_target,
    is_scan,
    labels_record,
    scan_record,
    set_record,
)
from ._layers import class_features, labels_colormap, labels_layer_kwargs
from ._lifecycle import BackgroundTask, Connections, when_closed
from ._panel import Panel, Section, confirm
from ._segment_controller import Phase, RunPlan, SegmentController
from ._settings import preferences

if TYPE_CHECKING:
    import napari

    from reseg.zoo.cards import ModelCard

LOAD_CHECKPOINT = "Load checkpoint..."
AUTO_BATCH = "auto"  # the batch spin box at 0
WHOLE_VOLUME, CURRENT_SLICE = "whole volume", "current slice"
LEGEND_DELAY_MS = 300  # counting 18 M voxels takes ~30 ms: once after a stroke, not on every paint event
# Doubt, not confidence, is what a grader looks for: confident pixels are transparent, doubtful ones orange.
DOUBT_COLORMAP = Colormap([[1.0, 0.45, 0.0, 0.9], [1.0, 0.45, 0.0, 0.0]], controls=[0.0, 1.0], name="reseg doubt")
DOUBT_LIMITS = (0.5, 1.0)
# Numbers align right; the item role takes the flags as an int in every Qt binding (setTextAlignment does not).
RIGHT_ALIGNED = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def _segment_in_engine(
    engine: EngineProcess,
    plan: RunPlan,
    image: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray | None,
    slice_confidence: np.ndarray,
) -> Iterator[tuple[int, str, int]]:
    """Worker body: the engine process segments, this thread writes each batch into the layers' arrays.
    Yields (slices done, device, batch size); ends early when the engine is told to stop or closed."""
    messages = engine.run(
        "segment",
        model_ref=plan.model_ref,
        weights_sha256=plan.card.weights_sha256,
        device=plan.device,
        image=image,
        slices=plan.slices,
        batch_size=plan.batch_size or None,  # 0: the engine's choice for the device
        pixel_spacing=plan.scan.pixel_spacing,
        voxel_spacing=plan.scan.geometry.voxel_spacing,
        raw=plan.raw,
        with_confidence=confidence is not None,
    )
    try:
        yield 0, next(messages), plan.batch_size
        for batch in messages:
            chunk = list(batch.slices)
            labels[chunk] = batch.labels
            if confidence is not None:
                confidence[chunk] = batch.confidence
            slice_confidence[chunk] = batch.slice_confidence
            yield batch.done, batch.device, batch.batch_size
    except EngineStopped:
        if not engine.closing:
            raise  # a crash; a closed widget's engine ends quietly


# What napari imports when it builds the first labels layer: pandas for the class names (`features`, 0.4 s),
# skimage.color (with scipy.linalg) for its default label colours (0.1 s). Imported in the worker instead, so
# they do not stall the first Run.
FIRST_LABELS_LAYER_IMPORTS = ("pandas", "skimage.color")


def _ready_for_a_run(engine: EngineProcess) -> list[str]:
    """Worker body: wait for the engine process, and meanwhile import what napari's first labels layer needs."""
    for module in FIRST_LABELS_LAYER_IMPORTS:
        importlib.import_module(module)
    return engine.wait_ready()


def _stack(array: np.ndarray) -> np.ndarray:
    return array if array.ndim == 3 else array[None]


class SegmentWidget(Panel):
    """Dock widget that runs a bundled or user model on an image layer and shows the result as labels."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = SegmentController()
        self.task = BackgroundTask(self)
        self.engine = BackgroundTask(self)  # waits for the engine process to be ready, then lists the devices
        self.engine_process = EngineProcess()
        self.destroyed.connect(lambda *_: self.engine_process.close())  # napari quits without closing docks
        self.connections = Connections(self)
        self.model_chosen_by_user = False
        settings = preferences()

        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.device_combo = QComboBox()
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 256)
        self.batch_spin.setSpecialValueText(AUTO_BATCH)  # 0: the engine chooses for the device
        self.batch_spin.setToolTip("auto: 1 B-scan / slice per pass on the CPU (fastest there), 4 on a GPU")
        self.batch_spin.setValue(settings.batch_size)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([WHOLE_VOLUME, CURRENT_SLICE])
        self.confidence_check = QCheckBox("doubt layer (orange: model unsure)")
        self.confidence_check.setToolTip(
            "adds an image layer over the labels: transparent where the model is "
            "confident, orange where its confidence is low"
        )
        self.postprocess_check = QCheckBox("model's post-processing")
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
        self.legend.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.legend.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.legend.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.legend.setColumnWidth(0, 18)
        self.legend.verticalHeader().setDefaultSectionSize(20)
        self.legend_timer = QTimer(self)
        self.legend_timer.setSingleShot(True)
        self.legend_timer.setInterval(LEGEND_DELAY_MS)
        self.legend_timer.timeout.connect(self.update_legend)
        self.legend_of: tuple[str, tuple] | None = None  # (scan key, classes) of the layer the legend shows

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_combo)
        form.addRow("device", self.device_combo)
        form.addRow("batch size", self.batch_spin)
        form.addRow("scope", self.scope_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.body.addLayout(form)
        self.body.addWidget(self.confidence_check)
        self.body.addWidget(self.postprocess_check)
        self.body.addLayout(buttons)
        self.body.addWidget(self.progress_bar)
        self.body.addWidget(self.status)
        self.body.addWidget(Section("classes", self.legend))

        self._fill_models()
        self._fill_devices(None, settings.device)
        self._fill_images()
        self.model_combo.activated.connect(self._on_model_activated)
        self.model_combo.currentIndexChanged.connect(self._show_postprocessing)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self._show_postprocessing()
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.connections.connect(CatalogueWatcher(self).changed, self._fill_models)
        for event in (
            self.viewer.layers.events.inserted,
            self.viewer.layers.events.removed,
            self.viewer.layers.events.moved,
        ):
            self.connections.connect(event, self._fill_images)
        self.connections.connect(self.viewer.layers.selection.events.active, self._follow_selection)
        when_closed(self, self._close)
        # The engine process starts once napari has docked the widget, and loads torch while the user
        # chooses, so that the first Run is quick.
        QTimer.singleShot(0, self._start_engine)

    def _start_engine(self) -> None:
        if self.engine.running or self.task.running:
            return
        self.engine_process.start()
        self.engine.start(
            _ready_for_a_run, self.engine_process, on_done=lambda devices: self._fill_devices(devices, self._device())
        )

    # --- pickers ---------------------------------------------------------------------------------------

    def _fill_images(self, event: Any = None) -> None:
        current = self.image_combo.currentData()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for layer in self.viewer.layers:
            if is_scan(layer):
                self.image_combo.addItem(layer.name, scan_record(layer).key)
        index = self.image_combo.findData(current)
        inserted = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        if inserted is not None and is_scan(inserted):
            index = self.image_combo.findData(scan_record(inserted).key)  # a scan just opened is the one to run
        self.image_combo.setCurrentIndex(max(index, 0))
        self.image_combo.blockSignals(False)
        self._on_image_changed()

    def _follow_selection(self, event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        if is_scan(active):
            index = self.image_combo.findData(scan_record(active).key)
            if index >= 0:
                self.image_combo.setCurrentIndex(index)

    def _scan_layer(self) -> Image | None:
        key = self.image_combo.currentData()
        return next((layer for layer in self.viewer.layers if is_scan(layer) and scan_record(layer).key == key), None)

    def _on_image_changed(self, _: object = None) -> None:
        """Preselect a model that suits the scan; a model the user chose stays if it suits it too."""
        layer = self._scan_layer()
        if layer is None:
            return
        modality = scan_record(layer).modality
        if self.model_chosen_by_user and self.controller.suits(self.model_combo.currentText(), modality):
            return
        best = self.controller.preselect(modality)
        self.model_combo.setCurrentIndex(self.model_combo.findText(best) if best else -1)
        self.model_chosen_by_user = False

    def _fill_models(self) -> None:
        """List the catalogue's models (as they are now), loaded checkpoints, and the load entry; keep the choice."""
        chosen = self.model_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems(self.controller.model_names())
        self.model_combo.addItem(LOAD_CHECKPOINT)
        self.model_combo.setCurrentIndex(self.model_combo.findText(chosen) if chosen != LOAD_CHECKPOINT else -1)
        self.model_combo.blockSignals(False)
        if self.model_combo.currentIndex() < 0:
            self._on_image_changed()

    def _device(self) -> str:
        return self.device_combo.currentData() or "auto"

    def _fill_devices(self, available: list[str] | None, chosen: str) -> None:
        """Devices this machine has once the engine is loaded (until then every choice; a missing one is
        reported when a run starts)."""
        self.device_combo.clear()
        names = available or [d for d in DEVICE_CHOICES if d != "auto"]
        self.device_combo.addItem(f"auto ({available[0]})" if available else "auto", "auto")
        for name in names:
            self.device_combo.addItem(name, name)
        index = self.device_combo.findData(chosen)
        self.device_combo.setCurrentIndex(max(index, 0))

    def _show_postprocessing(self) -> None:
        """Offer the post-processing switch only for models whose card lists steps, and say what they do."""
        try:
            steps = self.controller.card_of(self.model_combo.currentText())[1].postprocessing
        except ResegError:
            steps = []
        self.postprocess_check.setVisible(bool(steps))
        self.postprocess_check.setToolTip(
            f"{', '.join(steps)}: turns the network's output into labels (see the model card); untick to see "
            "the network's own argmax"
            if steps
            else ""
        )

    def _on_model_activated(self, index: int) -> None:
        """The user picked an entry (not code): remember it, or open a checkpoint for the load entry."""
        if self.model_combo.itemText(index) != LOAD_CHECKPOINT:
            self.model_chosen_by_user = True
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Load checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth *.json)"
        )
        if path:
            self.add_checkpoint(path)
        else:
            self._on_image_changed()

    def add_checkpoint(self, path: str) -> None:
        """Make a checkpoint file (with its card beside it) selectable; a bad one is refused with the cause."""
        try:
            label = self.controller.add_checkpoint(path)
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            self._on_image_changed()
            return
        self._fill_models()
        self.model_combo.setCurrentText(label)
        self.model_chosen_by_user = True

    # --- running ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the chosen model on the chosen scan, after asking what must be asked."""
        scan_layer = self._scan_layer()
        if scan_layer is None:
            show_warning("napari-reseg: open a greyscale image layer to segment first")
            return
        current, on_screen = None, None
        if scan_layer.ndim == 3:
            on_screen = int(self.viewer.dims.current_step[self.viewer.dims.ndim - 3])
            if self.scope_combo.currentText() == CURRENT_SLICE:
                current = on_screen
        try:
            if self.model_combo.currentIndex() < 0 or self.model_combo.currentText() == LOAD_CHECKPOINT:
                raise ResegError("choose a model first (none of the listed models suits this scan)")
            image = _stack(np.asarray(scan_layer.data[0] if scan_layer.multiscale else scan_layer.data))
            plan = self.controller.plan(
                scan_record(scan_layer),
                scan_layer.name,
                self.model_combo.currentText(),
                self._device(),
                self.batch_spin.value(),
                current,
                raw=not self.postprocess_check.isChecked(),
                with_confidence=self.confidence_check.isChecked(),
                on_screen=on_screen,
            )
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        question = self.controller.modality_question(plan)
        if question and not confirm(self, "Model for another modality", question):
            return
        target = find_run_target(self.viewer.layers, plan.scan.key, plan.card.classes)
        if target is not None:
            question = self.controller.overwrite_question(plan, target.name, labels_record(target), target.data)
            if question and not confirm(self, "Overwrite edits?", question):
                return
        labels = self._prepare_target(target, scan_layer, plan.card)
        self.viewer.layers.selection.active = labels  # Review follows the layer being worked on
        confidence = self._doubt_layer(scan_layer, plan) if plan.with_confidence else None
        record = labels_record(labels)
        assert record is not None, "the run target is a labels layer of ours"
        slice_confidence = record.slice_confidence
        if slice_confidence is None or len(slice_confidence) != plan.n_slices:
            slice_confidence = np.full(plan.n_slices, np.nan, dtype=np.float32)
        self.status.setText(self.controller.started(plan))
        self.progress_bar.setRange(0, len(plan.slices))
        self.progress_bar.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.task.start(
            _segment_in_engine,
            self.engine_process,
            plan,
            image,
            _stack(labels.data),
            None if confidence is None else _stack(confidence.data),
            slice_confidence,
            on_yield=self._on_batch,
            on_done=lambda _: self._end(slice_confidence),
            on_error=self._on_error,
            on_finish=self._on_task_finished,
            stop=self.engine_process.stop,
        )

    def _prepare_target(self, target: Labels | None, scan_layer: Image, card: ModelCard) -> Labels:
        """The scan's labels layer for this run: made on the first run, recoloured for the model after."""
        if target is not None:
            record = labels_record(target)
            if record is None or record.card is None or tuple(record.card.classes) != tuple(card.classes):
                # Recoloured only for another model's classes: setting napari's colormap and features again
                # costs ~30 ms on the GUI thread, just before the engine starts.
                target.colormap, target.features = labels_colormap(card.classes), class_features(card.classes)
            return target
        scan = scan_record(scan_layer)
        record = LabelsRecord(
            scan_key=scan.key, classes=tuple(card.classes), geometry=scan.geometry, modality=card.modality
        )  # what the labels mean: the model's modality
        kwargs = labels_layer_kwargs(card.classes, LayerTransform.of(scan_layer), f"{scan_layer.name} labels")
        return self.viewer.add_labels(
            np.zeros(scan_layer.data.shape, dtype=np.uint8), **kwargs, metadata={"reseg": record}
        )

    def _doubt_layer(self, scan_layer: Image, plan: RunPlan) -> Image:
        existing = find_derived(self.viewer.layers, plan.scan.key, "confidence")
        if existing is not None:
            return existing
        return self.viewer.add_image(
            np.ones(scan_layer.data.shape, dtype=np.float32),
            name=f"{scan_layer.name} doubt",
            **LayerTransform.of(scan_layer).kwargs(),
            colormap=DOUBT_COLORMAP,
            contrast_limits=DOUBT_LIMITS,
            blending="translucent",
            metadata={"reseg": DerivedImageRecord(plan.scan.key, "confidence")},
        )

    def _target(self) -> Labels | None:
        """The run's labels layer, looked up by identity (the user may have removed it meanwhile)."""
        run = self.controller.run
        return find_run_target(self.viewer.layers, run.scan.key, run.card.classes) if run else None

    def cancel(self) -> None:
        """Stop after the batch in progress; finished slices stay, the rest keep what they had."""
        text = self.controller.cancel()
        if text:
            self.status.setText(text)
            self.task.cancel()

    def _on_batch(self, report: tuple[int, str, int]) -> None:
        done, device, batch_size = report
        self.progress_bar.setValue(done)
        if self.controller.phase is not Phase.CANCELLING:
            self.status.setText(self.controller.progressed(done, device, batch_size))
        else:
            self.controller.progressed(done, device, batch_size)
        run = self.controller.run
        assert run is not None, "batches come only from a started run"
        for layer in (self._target(), find_derived(self.viewer.layers, run.scan.key, "confidence")):
            if layer is not None:
                layer.refresh()

    def _end(self, slice_confidence: np.ndarray) -> None:
        """The run is over (finished or cancelled): the layer's record gets the prediction it now holds."""
        run = self.controller.run
        assert run is not None, "only a started run ends"
        cancelled = self.controller.phase is Phase.CANCELLING or run.done < len(run.slices)
        text = self.controller.cancelled() if cancelled else self.controller.finished()
        labels = self._target()
        if labels is not None:
            record = labels_record(labels)
            assert record is not None, "the run target is a labels layer of ours"
            stack = _stack(labels.data)
            if record.prediction is None or record.prediction.shape != stack.shape:
                record.prediction = np.zeros_like(stack)
            finished = run.slices[: run.done]
            record.prediction[finished] = stack[finished]
            record.card, record.slice_confidence = run.card, slice_confidence
            if record.session is not None:
                record.session.model_rerun(finished, stack, run.card.name, run.card.weights_sha256, slice_confidence)
            set_record(labels, record)
            labels.refresh()
            self.update_legend(labels)
        self.status.setText(text)
        if cancelled:
            show_info(f"napari-reseg: {text}")

    def _on_error(self, error: Exception) -> None:
        text = self.controller.failed(error)
        self.status.setText(f"failed: {text}")
        show_error(f"napari-reseg: {text}")

    def _on_task_finished(self) -> None:
        self.controller.ended()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if not self.engine_process.alive and not self.engine_process.closing:
            QTimer.singleShot(0, self._start_engine)  # it died (killed, out of memory): ready for the next run

    # --- legend ----------------------------------------------------------------------------------------

    def update_legend(self, labels: Labels | None = None) -> None:
        """Colour, name and voxel count of every class of the layer's model, as the layer holds them now."""
        if labels is None:
            labels = self._legend_layer()
            if labels is None:
                return
        record = labels_record(labels)
        assert record is not None, "the legend shows a run target, a labels layer of ours"
        if self.legend_of is None or self.legend_of[0] != record.scan_key:
            self.connections.connect(labels.events.paint, lambda _: self.legend_timer.start())
        self.legend_of = (record.scan_key, record.classes)
        counts = np.bincount(np.asarray(labels.data).ravel(), minlength=256)
        self.legend.setRowCount(len(record.classes))
        for row, segmentation_class in enumerate(record.classes):
            swatch = QTableWidgetItem("")
            swatch.setBackground(QColor(*segmentation_class.color))
            count = QTableWidgetItem(f"{counts[segmentation_class.index]:,}")
            count.setData(Qt.ItemDataRole.TextAlignmentRole, RIGHT_ALIGNED)
            self.legend.setItem(row, 0, swatch)
            self.legend.setItem(row, 1, QTableWidgetItem(segmentation_class.name))
            self.legend.setItem(row, 2, count)

    def _legend_layer(self) -> Labels | None:
        return find_run_target(self.viewer.layers, *self.legend_of) if self.legend_of else None

    # --- closing ---------------------------------------------------------------------------------------

    def _close(self) -> None:
        """The dock was closed: end the engine process (and the run in it), stop listening to the viewer."""
        self.cancel()
        self.engine_process.close()
        self.legend_timer.stop()
        self.connections.disconnect_all()
