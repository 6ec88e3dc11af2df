"""The Fine-tune widget as a user drives it: train on exports, watch the curve, compare, keep / discard / remove."""

from __future__ import annotations

import pytest

from reseg.zoo.cards import read_card
from reseg.zoo.catalogue import model_paths


@pytest.fixture
def finetune(dock, user_models):
    return dock("Fine-tune")


def _items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


@pytest.mark.slow
def test_finetune_shows_curves_and_comparison_and_a_kept_model_is_pickable_then_removable(
    finetune, segment, corrections, user_models, qtbot, click, wait_for, answers
):
    finetune.add_data_folder(corrections)
    assert finetune.base_combo.currentText() == "lightreseg-oct"  # its classes are the export's
    assert finetune.name_edit.text() == "lightreseg-oct-finetuned"
    assert "encoder" in [finetune.freeze_list.item(i).data(0x0100) for i in range(finetune.freeze_list.count())]
    finetune.set_frozen(["encoder"])
    finetune.epochs_spin.setValue(2)
    assert not finetune.keep_button.isEnabled()

    click(finetune.start_button)
    wait_for(finetune)

    assert len(finetune.plot.losses) == 4 and [epoch for epoch, _ in finetune.plot.dice] == [1, 2]  # 2 x 2 steps
    table = finetune.comparison_table
    rows = [table.item(row, 0).text() for row in range(table.rowCount())]
    assert "RNFL" in rows and rows[-1] == "mean Dice"
    old, new, change = (float(table.item(rows.index("RNFL"), column).text()) for column in (1, 2, 3))
    assert 0 <= old <= 1 and 0 <= new <= 1 and change == pytest.approx(new - old, abs=2e-3)
    assert "held-out scan" in finetune.status.text() and finetune.keep_button.isEnabled()
    assert "lightreseg-oct-finetuned" not in _items(segment.model_combo)  # not before the user keeps it

    click(finetune.keep_button)
    qtbot.waitUntil(lambda: "lightreseg-oct-finetuned" in _items(segment.model_combo), timeout=3000)  # it lists it
    assert _items(finetune.own_models_combo) == ["lightreseg-oct-finetuned"]
    card = read_card(model_paths()["lightreseg-oct-finetuned"])
    assert card.parent == "lightreseg-oct" and card.training["config"]["freeze"] == ["encoder"]
    assert card.metrics["held_out_comparison"]["held_out_scans"] == card.training["validation_scans"]
    assert [p.name for p in user_models.iterdir()] and not list(user_models.glob(".finetune-*"))

    finetune.own_models_combo.setCurrentText("lightreseg-oct-finetuned")
    answers.append(True)
    click(finetune.remove_model_button)
    assert "lightreseg-oct-finetuned" in answers.asked[0]
    assert "lightreseg-oct-finetuned" not in model_paths()
    qtbot.waitUntil(lambda: "lightreseg-oct-finetuned" not in _items(segment.model_combo), timeout=3000)
    assert _items(finetune.own_models_combo) == [] and not finetune.remove_model_button.isEnabled()


@pytest.mark.slow
def test_cancel_stops_training_and_keeps_nothing(finetune, corrections, user_models, click, wait_for):
    finetune.add_data_folder(corrections)
    finetune.epochs_spin.setValue(50)
    click(finetune.start_button)
    finetune.task.worker.yielded.connect(lambda event: finetune.cancel_button.click())
    wait_for(finetune)
    assert "cancelled" in finetune.status.text()
    assert len(finetune.plot.losses) < 10 and finetune.controller.result is None
    assert not list(user_models.iterdir())  # staging folder removed, no model


@pytest.mark.slow
@pytest.mark.smoke
def test_discard_leaves_no_model_behind(finetune, corrections, user_models, click, wait_for):
    finetune.add_data_folder(corrections)
    finetune.epochs_spin.setValue(1)
    click(finetune.start_button)
    wait_for(finetune)
    assert finetune.keep_button.isEnabled()
    click(finetune.discard_button)
    assert not finetune.keep_button.isEnabled() and finetune.comparison_table.rowCount() == 0
    assert not list(user_models.iterdir()) and set(model_paths()) == {"lightreseg-oct", "l2gnet-ct"}


def test_bad_inputs_start_nothing_and_say_why(finetune, corrections, monkeypatch, click):
    errors = []
    monkeypatch.setattr("napari_reseg._finetune_widget.show_error", errors.append)
    click(finetune.start_button)
    assert not finetune.task.running and "exported corrections folder" in errors[-1]
    finetune.add_data_folder(corrections)
    finetune.name_edit.setText("lightreseg-oct")
    click(finetune.start_button)
    assert not finetune.task.running and "exists already" in errors[-1]
    finetune.name_edit.setText("../escape")
    click(finetune.start_button)
    assert not finetune.task.running and "not a usable model name" in errors[-1]


@pytest.mark.slow
def test_a_failing_run_reports_the_folder_and_cleans_up(finetune, tmp_path, user_models, click, wait_for, monkeypatch):
    errors = []
    monkeypatch.setattr("napari_reseg._finetune_widget.show_error", errors.append)
    empty = tmp_path / "not-an-export"
    empty.mkdir()
    finetune.add_data_folder(empty)
    click(finetune.start_button)
    wait_for(finetune)
    assert str(empty) in errors[-1] and "images/" in errors[-1]
    assert not list(user_models.iterdir())
