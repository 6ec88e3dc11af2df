"""The Fine-tune dock widget: retrain a model on exported corrections, see old vs new per class, keep or discard.

Training runs in a napari thread worker over `reseg.train.finetune.iter_finetune`; every step and epoch report comes
back to the event loop, which draws the curves. The new model is written to a staging folder inside the user
model folder and only appears in the model pickers when the user keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from reseg.devices import DEVICE_CHOICES
from reseg.errors import ResegError
from reseg.zoo.catalogue import user_model_dir

from ._catalogue_watch import CatalogueWatcher
from ._curve_plot import CurvePlot
from ._engine_process import EngineProcess, EngineStopped, TrainingEpoch, TrainingResult, TrainingStep
from ._finetune_controller import FinetuneController
from ._lifecycle import BackgroundTask, Connections, when_closed
from ._panel import Panel, Section, confirm
from ._settings import preferences

if TYPE_CHECKING:
    import napari

BETTER, WORSE = QColor(60, 170, 90), QColor(220, 80, 70)


def _in_engine(engine: EngineProcess, command: str, **arguments: Any) -> Iterator[object]:
    """Worker body: a command of the engine process, its yields passed on; a closed widget's ends quietly."""
    try:
        yield from engine.run(command, **arguments)
    except EngineStopped:
        if not engine.closing:
            raise


class FinetuneWidget(Panel):
    """Dock widget that fine-tunes a model on exported review folders and lets the user keep the result."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = FinetuneController()
        self.task = BackgroundTask(self)
        self.engine = BackgroundTask(self)  # asks the engine process for a network's parts, when a card lacks them
        self.engine_process = EngineProcess()  # started on the first need: training, or a card without parts
        self.destroyed.connect(lambda *_: self.engine_process.close())  # napari quits without closing docks
        self.connections = Connections(self)
        self.epochs_planned = 0
        self.parts_base: str | None = None  # the base model whose parts the freeze list shows (or tried to)

        self.data_list = QListWidget()
        self.data_list.setMinimumHeight(48)
        self.data_list.setMaximumHeight(80)
        self.add_data_button = QPushButton("Add exported folder...")
        self.remove_data_button = QPushButton("Remove")
        self.base_combo = QComboBox()
        self.name_edit = QLineEdit()
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(10)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(5)
        self.lr_spin.setRange(1e-5, 1e-1)
        self.lr_spin.setSingleStep(1e-4)
        self.lr_spin.setValue(2e-4)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 64)
        self.batch_spin.setValue(4)
        self.held_out_spin = QDoubleSpinBox()
        self.held_out_spin.setRange(0.05, 0.5)
        self.held_out_spin.setSingleStep(0.05)
        self.held_out_spin.setValue(0.2)
        self.held_out_spin.setToolTip(
            "share of the scans (whole scans, never single slices) kept out of training "
            "to compare the old and the new model on"
        )
        self.freeze_list = QListWidget()
        self.freeze_list.setMinimumHeight(48)
        self.freeze_list.setMaximumHeight(90)
        self.freeze_list.setToolTip("ticked parts of the network keep the base model's weights")
        self.device_combo = QComboBox()
        self.start_button = QPushButton("Fine-tune")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.plot = CurvePlot()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.comparison_table = QTableWidget(0, 4)
        self.comparison_table.setHorizontalHeaderLabels(["class", "base Dice", "new Dice", "change"])
        self.comparison_table.verticalHeader().setVisible(False)
        self.comparison_table.verticalHeader().setDefaultSectionSize(20)
        header = self.comparison_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # numbers take what they need,
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the class names the rest
        self.comparison_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.keep_button = QPushButton("Keep new model")
        self.discard_button = QPushButton("Discard")
        self.own_models_combo = QComboBox()
        self.remove_model_button = QPushButton("Remove")

        data_buttons = QHBoxLayout()
        data_buttons.addWidget(self.add_data_button)
        data_buttons.addWidget(self.remove_data_button)
        form = QFormLayout()
        form.addRow("base model", self.base_combo)
        form.addRow("new name", self.name_edit)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("learning rate", self.lr_spin)
        form.addRow("batch size", self.batch_spin)
        form.addRow("held-out share", self.held_out_spin)
        form.addRow("device", self.device_combo)
        form.addRow("freeze", self.freeze_list)
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.start_button)
        run_buttons.addWidget(self.cancel_button)
        comparison = QWidget()
        comparison_layout = QFormLayout(comparison)
        comparison_layout.setContentsMargins(0, 0, 0, 0)
        comparison_layout.addRow(self.comparison_table)
        decision = QHBoxLayout()
        decision.addWidget(self.keep_button)
        decision.addWidget(self.discard_button)
        comparison_layout.addRow(decision)
        own = QWidget()
        own_layout = QHBoxLayout(own)
        own_layout.setContentsMargins(0, 0, 0, 0)
        own_layout.addWidget(self.own_models_combo, 1)
        own_layout.addWidget(self.remove_model_button)

        self.body.addWidget(QLabel("exported corrections (reseg export folders)"))
        self.body.addWidget(self.data_list)
        self.body.addLayout(data_buttons)
        self.body.addLayout(form)
        self.body.addLayout(run_buttons)
        self.body.addWidget(self.progress_bar)
        self.body.addWidget(self.plot)
        self.body.addWidget(self.status)
        self.body.addWidget(Section("old vs new model, held-out scans", comparison))
        self.body.addWidget(Section("your models", own, expanded=False))

        self._fill_devices(None)
        self._fill_models()
        self._set_decision_enabled(False)
        self.add_data_button.clicked.connect(self._choose_folder)
        self.remove_data_button.clicked.connect(lambda: self.data_list.takeItem(self.data_list.currentRow()))
        self.base_combo.currentTextChanged.connect(self._on_base_chosen)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.keep_button.clicked.connect(self.keep)
        self.discard_button.clicked.connect(self.discard)
        self.remove_model_button.clicked.connect(self.remove_selected_model)
        self.connections.connect(CatalogueWatcher(self).changed, self._fill_models)
        when_closed(self, self._close)
        self._on_base_chosen(self.base_combo.currentText())  # lists the base's parts once napari has docked it

    # --- inputs ----------------------------------------------------------------------------------------

    def _fill_models(self) -> None:
        chosen = self.base_combo.currentText()
        names = self.controller.base_models()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        self.base_combo.addItems(names)
        if chosen in names:
            self.base_combo.setCurrentText(chosen)
        self.base_combo.blockSignals(False)
        self.own_models_combo.clear()
        self.own_models_combo.addItems(self.controller.own_models())
        self.remove_model_button.setEnabled(self.own_models_combo.count() > 0)

    def _fill_devices(self, available: list[str] | None) -> None:
        chosen = self.device_combo.currentData() or preferences().device
        self.device_combo.clear()
        self.device_combo.addItem(f"auto ({available[0]})" if available else "auto", "auto")
        for name in available or [d for d in DEVICE_CHOICES if d != "auto"]:
            self.device_combo.addItem(name, name)
        self.device_combo.setCurrentIndex(max(self.device_combo.findData(chosen), 0))

    def add_data_folder(self, folder: str | Path) -> None:
        """Add an export folder; the first one also picks a base model whose classes match its dataset.json."""
        if not self.data_list.findItems(str(folder), Qt.MatchFlag.MatchExactly):
            self.data_list.addItem(str(folder))
        if self.data_list.count() == 1:
            base = self.controller.base_for(Path(folder), self.base_combo.currentText())
            if base:
                self.base_combo.setCurrentText(base)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add an exported corrections folder")
        if folder:
            self.add_data_folder(folder)

    def _on_base_chosen(self, name: str) -> None:
        """Suggest a name for the new model, and list the base network's parts (built off the GUI thread)."""
        if name and not self.name_edit.isModified():  # a name the user typed stays
            self.name_edit.setText(self.controller.free_name(f"{name}-finetuned"))
        self._load_parts()

    def _load_parts(self) -> None:
        """List the chosen base's parts: from its card, or from the engine process for an older card."""
        base = self.base_combo.currentText()
        if not base or base == self.parts_base:
            return
        parts = self.controller.parts(base)
        if parts:
            self._show_parts(base, parts)
        elif not self.engine.running:
            self.freeze_list.clear()
            self.freeze_list.addItem("(reading the network's parts...)")
            self.engine_process.start()
            self.engine.start(
                _in_engine,
                self.engine_process,
                "parts",
                model=base,
                on_yield=lambda found: self._show_parts(base, found),
                on_error=lambda error: self._no_parts(base, error),
                on_finish=self._load_parts,
            )

    def _no_parts(self, base: str, error: Exception) -> None:
        self.parts_base = base
        self.freeze_list.clear()
        self.status.setText(f"cannot read the network of {base!r}: {error}")

    def _show_parts(self, base: str, parts: dict[str, int]) -> None:
        self.parts_base = base
        if base != self.base_combo.currentText():
            return
        self.freeze_list.clear()
        for part, count in parts.items():
            item = QListWidgetItem(f"{part} ({count / 1e6:.2f} M)")
            item.setData(Qt.ItemDataRole.UserRole, part)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.freeze_list.addItem(item)

    def set_frozen(self, parts: list[str]) -> None:
        for row in range(self.freeze_list.count()):
            item = self.freeze_list.item(row)
            item.setCheckState(
                Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in parts else Qt.CheckState.Unchecked
            )

    def frozen_parts(self) -> tuple[str, ...]:
        items = (self.freeze_list.item(row) for row in range(self.freeze_list.count()))
        return tuple(
            item.data(Qt.ItemDataRole.UserRole)
            for item in items
            if item.data(Qt.ItemDataRole.UserRole) and item.checkState() == Qt.CheckState.Checked
        )

    def folders(self) -> list[str]:
        return [self.data_list.item(row).text() for row in range(self.data_list.count())]

    # --- running ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start fine-tuning with the settings shown."""
        problem = self.controller.problem_with_inputs(self.folders(), self.name_edit.text().strip())
        if problem:
            show_error(f"napari-reseg: {problem}")
            return
        try:
            staging = self.controller.start()
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        self._set_decision_enabled(False)
        self.comparison_table.setRowCount(0)
        settings = {
            "epochs": self.epochs_spin.value(),
            "batch_size": self.batch_spin.value(),
            "learning_rate": self.lr_spin.value(),
            "device": self.device_combo.currentData(),
            "freeze": self.frozen_parts(),
        }
        self.epochs_planned = settings["epochs"]
        self.plot.clear()
        self.progress_bar.setValue(0)
        self.status.setText(f"fine-tuning {self.base_combo.currentText()} on {len(self.folders())} folder(s)...")
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.engine_process.start()
        self.task.start(
            _in_engine,
            self.engine_process,
            "finetune",
            base=self.base_combo.currentText(),
            folders=self.folders(),
            name=self.name_edit.text().strip(),
            staging=str(staging),
            settings=settings,
            held_out=self.held_out_spin.value(),
            on_yield=self._on_event,
            on_error=self._on_error,
            on_finish=self._on_task_finished,
            stop=self.engine_process.stop,
        )

    def cancel(self) -> None:
        if self.task.running:
            self.status.setText("cancelling after the current step...")
            self.task.cancel()

    def _on_event(self, event: object) -> None:
        if isinstance(event, TrainingStep):
            if event.step == 1 and event.epoch == 1:
                self.plot.clear(event.steps)
                self.progress_bar.setMaximum(event.steps * self.epochs_planned)
            self.plot.add_loss(event.loss)
            self.progress_bar.setValue((event.epoch - 1) * event.steps + event.step)
        elif isinstance(event, TrainingEpoch):
            self.plot.add_dice(event.epoch, event.mean_dice)
            self.status.setText(
                f"epoch {event.epoch}/{event.epochs}: loss {event.train_loss:.4f}, held-out mean "
                f"Dice {event.mean_dice:.3f} ({event.seconds:.0f} s)"
            )
        elif isinstance(event, TrainingResult):
            self.controller.trained(event)
            self._show_comparison(event)

    def _show_comparison(self, result: TrainingResult) -> None:
        rows = [*result.rows, ("mean Dice", result.base_mean_dice, result.new_mean_dice)]
        self.comparison_table.setRowCount(len(rows))
        for row, (name, old, new) in enumerate(rows):
            cells = [name, f"{old:.3f}", f"{new:.3f}", f"{new - old:+.3f}"]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 3 and abs(new - old) >= 0.0005:
                    item.setForeground(BETTER if new > old else WORSE)
                self.comparison_table.setItem(row, column, item)
        gain = result.mean_dice_change
        verdict = "better" if gain > 0 else "not better"
        self.status.setText(
            f"{result.name} is {verdict} than {result.base_name} on {len(result.held_out_scans)} "
            f"held-out scan(s) (mean Dice {gain:+.3f}). Keep it or discard it."
        )
        self._set_decision_enabled(True)

    def _on_error(self, error: Exception) -> None:
        message = str(error) if isinstance(error, ResegError) else f"{type(error).__name__}: {error}"
        self.status.setText(f"fine-tuning failed: {message}")
        show_error(f"napari-reseg: fine-tuning failed: {message}")

    def _on_task_finished(self) -> None:
        if self.controller.result is None and self.status.text().startswith("cancelling"):
            self.status.setText("cancelled; nothing was kept")
        self.controller.stopped()
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    # --- keep / discard / remove -----------------------------------------------------------------------

    def _set_decision_enabled(self, enabled: bool) -> None:
        self.keep_button.setEnabled(enabled)
        self.discard_button.setEnabled(enabled)

    def keep(self) -> None:
        """Move the new model into the user model folder; every model picker lists it (`CatalogueWatcher`)."""
        try:
            name = self.controller.keep()
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        self._set_decision_enabled(False)
        self.comparison_table.setRowCount(0)
        self._fill_models()
        self.status.setText(f"kept {name!r} ({user_model_dir()}); it is in the Segment widget's model list")
        show_info(f"napari-reseg: kept model {name!r}")

    def discard(self) -> None:
        self.controller.discard()
        self._set_decision_enabled(False)
        self.comparison_table.setRowCount(0)
        self.status.setText("discarded the new model")

    def remove_selected_model(self) -> None:
        name = self.own_models_combo.currentText()
        if not name or not confirm(self, "Remove model?", f"Delete your model {name!r} and its card for good?"):
            return
        try:
            self.controller.remove(name)
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        self._fill_models()
        self.status.setText(f"removed model {name!r}")

    # --- closing ---------------------------------------------------------------------------------------

    def _close(self) -> None:
        """The dock was closed: end the engine process (training in it is not kept), stop listening."""
        self.cancel()
        self.engine_process.close()
        self.connections.disconnect_all()
