"""The Fine-tune dock widget: retrain a model on exported corrections, see old vs new per class, keep or discard.

Training runs in a napari thread worker over `reseg.finetune.iter_finetune`; every step and epoch report comes
back to the event loop, which draws the curves. The new model is written to a staging folder inside the user
model folder and only appears in the model pickers when the user keeps it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from reseg.data.dataset import read_manifest
from reseg.devices import available_devices
from reseg.errors import ResegError
from reseg.zoo import keep_model, model_paths, remove_model, resolve_card, user_model_dir

from ._curve_plot import CurvePlot
from ._model_events import model_registry_events

if TYPE_CHECKING:
    import napari
    from reseg.finetune import Comparison, FinetuneResult
    from reseg.training import TrainingConfig

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
BETTER, WORSE = QColor(60, 170, 90), QColor(220, 80, 70)


def _finetune(base: str, folders: list[str], name: str, staging: str, config: "TrainingConfig",
              held_out: float) -> Iterator[object]:
    """The worker's body: MONAI and torch are imported here, off the event loop, when training starts."""
    from reseg.finetune import iter_finetune

    yield from iter_finetune(base, folders, name, staging, config, held_out_fraction=held_out)


class FinetuneWidget(QWidget):
    """Dock widget that fine-tunes a model on exported review folders and lets the user keep the result."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: GeneratorWorker | None = None
        self.staging: Path | None = None
        self.result: FinetuneResult | None = None
        # Replaced in tests: asks before a kept model is deleted.
        self.confirm_remove: Callable[[str], bool] = self._ask_remove

        self.data_list = QListWidget()
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
        self.held_out_spin.setToolTip("share of the scans (whole scans, never single slices) kept out of training "
                                      "to compare the old and the new model on")
        self.freeze_list = QListWidget()
        self.freeze_list.setMaximumHeight(90)
        self.freeze_list.setToolTip("ticked parts of the network keep the base model's weights")
        self.device_combo = QComboBox()
        for device in available_devices():
            self.device_combo.addItem(device, device)
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
        header = self.comparison_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)  # numbers take what they need,
        header.setSectionResizeMode(0, QHeaderView.Stretch)  # the class names the rest
        self.comparison_table.setEditTriggers(QTableWidget.NoEditTriggers)
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
        decision = QHBoxLayout()
        decision.addWidget(self.keep_button)
        decision.addWidget(self.discard_button)
        own = QHBoxLayout()
        own.addWidget(self.own_models_combo, 1)
        own.addWidget(self.remove_model_button)
        own_box = QGroupBox("your models")
        own_box.setLayout(own)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("exported corrections (reseg export folders)"))
        layout.addWidget(self.data_list)
        layout.addLayout(data_buttons)
        layout.addLayout(form)
        layout.addLayout(run_buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.plot)
        layout.addWidget(self.status)
        layout.addWidget(self.comparison_table)
        layout.addLayout(decision)
        layout.addWidget(own_box)

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
        model_registry_events().changed.connect(self._fill_models)
        self._on_base_chosen(self.base_combo.currentText())

    # --- inputs ----------------------------------------------------------------------------------------

    def _fill_models(self) -> None:
        paths = model_paths()
        chosen = self.base_combo.currentText()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        self.base_combo.addItems(sorted(paths))
        if chosen in paths:
            self.base_combo.setCurrentText(chosen)
        self.base_combo.blockSignals(False)
        self.own_models_combo.clear()
        self.own_models_combo.addItems(sorted(name for name, path in paths.items() if path.parent == user_model_dir()))
        self.remove_model_button.setEnabled(self.own_models_combo.count() > 0)

    def add_data_folder(self, folder: str | Path) -> None:
        """Add an export folder; the first one also picks a base model whose classes match its dataset.json."""
        if not self.data_list.findItems(str(folder), Qt.MatchExactly):
            self.data_list.addItem(str(folder))
        if self.data_list.count() == 1:
            self._choose_base_for(Path(folder))

    def _choose_base_for(self, folder: Path) -> None:
        try:
            classes = [entry["name"] for entry in read_manifest(folder).get("classes", [])]
        except (ResegError, KeyError, TypeError):
            return  # the run reports a broken folder with its cause
        matching = [name for name in sorted(model_paths()) if resolve_card(name)[0].class_names == classes]
        if classes and matching and self.base_combo.currentText() not in matching:
            self.base_combo.setCurrentText(matching[0])

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add an exported corrections folder")
        if folder:
            self.add_data_folder(folder)

    def _on_base_chosen(self, name: str) -> None:
        """Offer the base network's parts for freezing and suggest a name for the new model."""
        self.freeze_list.clear()
        if not name:
            return
        from reseg.models import build_network  # torch, not MONAI: the widget opens without a stall

        card = resolve_card(name)[0]
        for part, count in build_network(card.architecture, card.arguments).parts().items():
            item = QListWidgetItem(f"{part} ({count / 1e6:.2f} M)")
            item.setData(Qt.UserRole, part)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked)
            self.freeze_list.addItem(item)
        if not self.name_edit.isModified():  # a name the user typed stays
            self.name_edit.setText(self._free_name(f"{name}-finetuned"))

    @staticmethod
    def _free_name(stem: str) -> str:
        taken, name, number = set(model_paths()), stem, 2
        while name in taken:
            name, number = f"{stem}-{number}", number + 1
        return name

    def set_frozen(self, parts: list[str]) -> None:
        for row in range(self.freeze_list.count()):
            item = self.freeze_list.item(row)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in parts else Qt.Unchecked)

    def frozen_parts(self) -> tuple[str, ...]:
        items = (self.freeze_list.item(row) for row in range(self.freeze_list.count()))
        return tuple(item.data(Qt.UserRole) for item in items if item.checkState() == Qt.Checked)

    def _problem_with_inputs(self) -> str | None:
        name = self.name_edit.text().strip()
        if self.data_list.count() == 0:
            return "add at least one exported corrections folder"
        if not MODEL_NAME.match(name):
            return f"{name!r} is not a usable model name (letters, digits, '.', '_' and '-')"
        if name in model_paths():
            return f"a model named {name!r} exists already; choose another name"
        return None

    # --- running ---------------------------------------------------------------------------------------

    def start(self) -> GeneratorWorker | None:
        """Start fine-tuning with the settings shown; returns the worker (None if nothing started)."""
        if self.worker is not None:
            return None
        problem = self._problem_with_inputs()
        if problem:
            show_error(f"napari-reseg: {problem}")
            return None
        from reseg.training import TrainingConfig

        self.discard()
        config = TrainingConfig(epochs=self.epochs_spin.value(), batch_size=self.batch_spin.value(),
                                learning_rate=self.lr_spin.value(), device=self.device_combo.currentData(),
                                freeze=self.frozen_parts())
        user_model_dir().mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".finetune-", dir=user_model_dir()))
        folders = [self.data_list.item(row).text() for row in range(self.data_list.count())]
        self.plot.clear()
        self.progress_bar.setValue(0)
        self.status.setText(f"fine-tuning {self.base_combo.currentText()} on {len(folders)} folder(s)...")
        self.worker = create_worker(_finetune, self.base_combo.currentText(), folders, self.name_edit.text().strip(),
                                    str(self.staging), config, self.held_out_spin.value(), _ignore_errors=True)
        self.worker.yielded.connect(self._on_event)
        self.worker.aborted.connect(self._on_cancelled)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_worker_done)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.status.setText("cancelling after the current step...")
            self.worker.quit()

    def _on_event(self, event: object) -> None:
        from reseg.finetune import FinetuneResult
        from reseg.training import EpochReport, StepReport

        if isinstance(event, StepReport):
            if event.step == 1 and event.epoch == 1:
                self.plot.clear(event.steps)
                self.progress_bar.setMaximum(event.steps * self.epochs_spin.value())
            self.plot.add_loss(event.loss)
            self.progress_bar.setValue((event.epoch - 1) * event.steps + event.step)
        elif isinstance(event, EpochReport):
            self.plot.add_dice(event.epoch, event.validation["mean_dice"])
            self.status.setText(f"epoch {event.epoch}/{event.epochs}: loss {event.train_loss:.4f}, held-out mean "
                                f"Dice {event.validation['mean_dice']:.3f} ({event.seconds:.0f} s)")
        elif isinstance(event, FinetuneResult):
            self.result = event
            self._show_comparison(event.comparison)

    def _show_comparison(self, comparison: "Comparison") -> None:
        rows = comparison.rows()
        summary = [("mean Dice", comparison.base.summary["mean_dice"], comparison.new.summary["mean_dice"])]
        self.comparison_table.setRowCount(len(rows) + 1)
        for row, (name, old, new) in enumerate(rows + summary):
            cells = [name, f"{old:.3f}", f"{new:.3f}", f"{new - old:+.3f}"]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 3 and abs(new - old) >= 0.0005:
                    item.setForeground(BETTER if new > old else WORSE)
                self.comparison_table.setItem(row, column, item)
        gain = comparison.mean_dice_change
        verdict = "better" if gain > 0 else "not better"
        self.status.setText(f"{comparison.new_name} is {verdict} than {comparison.base_name} on "
                            f"{len(comparison.held_out_scans)} held-out scan(s) (mean Dice {gain:+.3f}). "
                            "Keep it or discard it.")
        self._set_decision_enabled(True)

    def _on_cancelled(self) -> None:
        self._remove_staging()
        self.status.setText("cancelled; nothing was kept")

    def _on_error(self, error: Exception) -> None:
        self._remove_staging()
        message = str(error) if isinstance(error, ResegError) else f"{type(error).__name__}: {error}"
        self.status.setText(f"fine-tuning failed: {message}")
        show_error(f"napari-reseg: fine-tuning failed: {message}")

    def _on_worker_done(self) -> None:
        self.worker = None
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    # --- keep / discard / remove -----------------------------------------------------------------------

    def _set_decision_enabled(self, enabled: bool) -> None:
        self.keep_button.setEnabled(enabled)
        self.discard_button.setEnabled(enabled)

    def keep(self) -> None:
        """Move the new model into the user model folder; every model picker lists it at once."""
        if self.result is None:
            return
        try:
            card_path = keep_model(self.result.weights.with_suffix(".json"))
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        name = self.result.card.name
        self.discard()
        model_registry_events().changed.emit()
        self.status.setText(f"kept {name!r} ({card_path.parent}); it is in the Segment widget's model list")
        show_info(f"napari-reseg: kept model {name!r}")

    def discard(self) -> None:
        self.result = None
        self._remove_staging()
        self._set_decision_enabled(False)
        self.comparison_table.setRowCount(0)

    def _remove_staging(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def _ask_remove(self, name: str) -> bool:
        answer = QMessageBox.question(self, "Remove model?", f"Delete your model {name!r} and its card for good?")
        return answer == QMessageBox.Yes

    def remove_selected_model(self) -> None:
        name = self.own_models_combo.currentText()
        if not name or not self.confirm_remove(name):
            return
        try:
            remove_model(name)
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        model_registry_events().changed.emit()
        self.status.setText(f"removed model {name!r}")
