"""The Segment widget as a user drives it in napari: the model that suits the scan is preselected, Run fills
one labels layer per scan, re-running asks before replacing edits, cancelling and closing stop the work."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap

from reseg.classes import OCT_CLASSES
from reseg.evaluation.metrics import per_class_scores, summarize


def _choose(widget, image=None, model=None, scope="whole volume", batch=2):
    if image is not None:
        widget.image_combo.setCurrentText(image)
    if model is not None:
        widget.model_combo.setCurrentText(model)
    widget.scope_combo.setCurrentText(scope)
    widget.batch_spin.setValue(batch)


def _labels_layers(viewer):
    return [layer for layer in viewer.layers if isinstance(layer, Labels)]


@pytest.mark.smoke
def test_a_run_gives_one_named_coloured_labels_layer_in_register(viewer, segment, small_oct, click, wait_for):
    image, phantom = small_oct
    assert segment.image_combo.currentText() == "scan.tif"
    assert segment.model_combo.currentText() == "lightreseg-oct"  # the scan is OCT (its spacing says so)
    _choose(segment)
    segment.confidence_check.setChecked(True)
    click(segment.run_button)
    assert not segment.run_button.isEnabled() and segment.cancel_button.isEnabled()
    wait_for(segment)

    [labels] = _labels_layers(viewer)
    assert labels.name == "scan.tif labels" and labels.data.shape == image.data.shape
    assert labels.data.dtype == np.uint8 and not labels.multiscale
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert list(labels.features["class"]) == [c.name for c in OCT_CLASSES]
    rnfl = OCT_CLASSES[1]
    np.testing.assert_allclose(labels.colormap.map(np.array([1]))[0][:3], np.array(rnfl.color) / 255, atol=1e-3)
    summary = summarize(per_class_scores(labels.data, phantom.labels, 10), skip_classes=(0,))
    assert summary["mean_dice"] > 0.6, summary
    assert "ran on cpu" in segment.status.text() and segment.run_button.isEnabled()
    counts = [int(segment.legend.item(row, 2).text().replace(",", "")) for row in range(10)]
    assert counts == list(np.bincount(labels.data.ravel(), minlength=10))
    assert segment.legend.item(1, 1).text() == "RNFL"

    doubt = viewer.layers["scan.tif doubt"]
    assert 0.1 < doubt.data.min() <= doubt.data.max() <= 1
    assert doubt.blending == "translucent"  # not additive: the scan and the labels stay visible beneath
    assert doubt.colormap.map(np.array([1.0]))[0][3] == 0  # confident pixels are see-through
    assert doubt.name not in [segment.image_combo.itemText(i) for i in range(segment.image_combo.count())]


@pytest.mark.slow
@pytest.mark.smoke
def test_running_again_asks_and_keep_changes_nothing_and_stays_one_layer(
    viewer, segment, small_oct, click, wait_for, answers
):
    _choose(segment)
    click(segment.run_button)
    wait_for(segment)
    labels = viewer.layers["scan.tif labels"]
    labels.paint((1, 100, 90), 9)  # the grader's correction
    edited = labels.data.copy()

    answers.append(False)  # "keep my edits"
    click(segment.run_button)
    assert len(answers.asked) == 1 and "scan.tif labels" in answers.asked[0]
    assert not segment.task.running
    np.testing.assert_array_equal(labels.data, edited)
    assert len(_labels_layers(viewer)) == 1

    answers.append(True)
    click(segment.run_button)
    wait_for(segment)
    assert len(_labels_layers(viewer)) == 1 and not np.array_equal(labels.data, edited)
    click(segment.run_button)  # no edits since the last run: no question
    wait_for(segment)
    assert len(answers.asked) == 2 and len(_labels_layers(viewer)) == 1


@pytest.mark.slow
def test_a_graders_own_colours_survive_running_the_same_model_again(viewer, segment, small_oct, click, wait_for):
    _choose(segment, batch=0)
    click(segment.run_button)
    wait_for(segment)
    labels = viewer.layers["scan.tif labels"]
    colours = dict(labels.colormap.color_dict)
    colours[1] = np.array([1.0, 0.0, 1.0, 1.0])  # RNFL in magenta, to see it against the scan
    labels.colormap = DirectLabelColormap(color_dict=colours)
    click(segment.run_button)
    wait_for(segment)
    np.testing.assert_allclose(labels.colormap.map(np.array([1]))[0], [1.0, 0.0, 1.0, 1.0])
    assert list(labels.features["class"]) == [c.name for c in OCT_CLASSES]


@pytest.mark.slow
def test_by_default_the_engine_chooses_the_batch_size_for_the_device(viewer, segment, small_oct, click, wait_for):
    assert segment.batch_spin.value() == 0 and segment.batch_spin.text() == "auto"
    _choose(segment, batch=0)
    click(segment.run_button)
    wait_for(segment)
    run = segment.controller.run
    assert run is not None and run.device_used == "cpu"
    assert run.batch_size_first == run.batch_size_used == 1  # one B-scan per pass: the fastest on a CPU
    assert "ran on cpu" in segment.status.text() and "lowered" not in segment.status.text()
    assert _labels_layers(viewer)[0].data.any(axis=(1, 2)).all()  # every B-scan segmented


@pytest.mark.slow
def test_current_slice_scope_computes_only_the_slice_on_screen(viewer, segment, small_oct, click, wait_for):
    _choose(segment, scope="current slice")
    viewer.dims.set_current_step(0, 2)
    click(segment.run_button)
    wait_for(segment)
    labels = viewer.layers["scan.tif labels"].data
    assert labels[2].any() and not labels[[0, 1, 3]].any()


@pytest.mark.slow
def test_cancel_stops_within_a_batch_and_keeps_finished_slices(viewer, segment, write_oct_scan, click, wait_for):
    path, _ = write_oct_scan("long.tif", n_bscans=12, seed=2)
    viewer.open(str(path), plugin="napari-reseg")
    _choose(segment, image="long.tif", batch=1)
    click(segment.run_button)
    segment.task.worker.yielded.connect(lambda report: click(segment.cancel_button) if report[0] == 1 else None)
    wait_for(segment)
    labels = viewer.layers["long.tif labels"].data
    run = segment.controller.run
    assert 1 <= run.done <= 2, run.done
    assert run.slices[0] == viewer.dims.current_step[0], "the B-scan on screen ran first"
    finished, rest = run.slices[: run.done], run.slices[run.done :]
    assert all(labels[z].any() for z in finished) and not labels[rest].any()
    assert "cancelled after" in segment.status.text()


@pytest.mark.slow
@pytest.mark.smoke
def test_closing_the_dock_mid_run_stops_its_worker(viewer, segment, write_oct_scan, qtbot, click):
    path, _ = write_oct_scan("long.tif", n_bscans=16, seed=3)
    viewer.open(str(path), plugin="napari-reseg")
    _choose(segment, image="long.tif", batch=1)
    click(segment.run_button)
    qtbot.waitUntil(lambda: segment.controller.run.done >= 1, timeout=120_000)
    viewer.window.remove_dock_widget(segment)  # what the dock's close button does
    qtbot.waitUntil(lambda: not segment.task.running, timeout=60_000)
    assert not segment.engine_process.alive  # the model's process is gone with the run in it
    assert segment.controller.run.done < 16


@pytest.mark.slow
def test_result_goes_to_the_layer_it_was_computed_for(viewer, segment, small_oct, click, wait_for):
    _choose(segment, batch=1)
    click(segment.run_button)

    def switch_away(report):
        if report[0] == 1:  # mid-run: the user opens, selects and picks other things
            other = viewer.add_image(np.zeros((4, 224, 192), np.uint8), name="other scan")
            viewer.layers.selection.active = other
            segment.image_combo.setCurrentText("other scan")

    segment.task.worker.yielded.connect(switch_away)
    wait_for(segment)
    assert all(viewer.layers["scan.tif labels"].data[z].any() for z in range(4))
    assert "other scan labels" not in viewer.layers


def test_a_model_for_another_modality_is_never_preselected_and_warns(
    viewer, segment, small_oct, shared_data, click, answers
):
    [ct] = viewer.open(str(shared_data("ct_totalseg", "example_ct_sm.nii.gz")), plugin="napari-reseg")
    assert segment.image_combo.currentText() == ct.name and segment.model_combo.currentText() == "l2gnet-ct"
    segment.image_combo.setCurrentText("scan.tif")
    assert segment.model_combo.currentText() == "lightreseg-oct"

    segment.model_combo.setCurrentText("l2gnet-ct")  # the user picks the CT model for the OCT scan anyway
    answers.append(False)
    click(segment.run_button)
    assert "trained on CT" in answers.asked[0] and "Run it anyway" in answers.asked[0]
    assert not segment.task.running and not _labels_layers(viewer)


@pytest.mark.slow
def test_a_whole_ct_volume_gets_the_cards_volume_step_and_a_single_slice_does_not(
    viewer, segment, shared_data, click, wait_for
):
    """The DICOM series: per slice the network leaves specks of kidney and gallbladder, which only the whole
    stack (and its voxel size, from the file) shows to be specks."""
    from reseg.inference.segmentation import segment as segment_volume
    from reseg.io import read_volume
    from reseg.zoo.weights import load_model

    series = shared_data("ct_totalseg", "example_ct_dicom")
    [ct] = viewer.open(str(series), plugin="napari-reseg")
    assert segment.model_combo.currentText() == "l2gnet-ct"
    _choose(segment, batch=4)
    click(segment.run_button)
    wait_for(segment)
    labels = np.array(viewer.layers[f"{ct.name} labels"].data)
    volume = read_volume(series)
    model = load_model("l2gnet-ct", device="cpu")
    expected = segment_volume(
        model, volume.data, pixel_spacing=volume.pixel_spacing, voxel_spacing=volume.voxel_spacing
    )
    np.testing.assert_array_equal(labels, expected.labels)
    per_slice = segment_volume(model, volume.data, pixel_spacing=volume.pixel_spacing).labels
    assert (per_slice != labels).any()  # the volume step removed something

    z = int(np.flatnonzero((per_slice != labels).any(axis=(1, 2)))[0])
    viewer.dims.set_current_step(0, z)
    _choose(segment, scope="current slice")
    click(segment.run_button)
    wait_for(segment)
    np.testing.assert_array_equal(viewer.layers[f"{ct.name} labels"].data[z], per_slice[z])


@pytest.mark.slow
def test_a_plain_array_layer_can_be_segmented(viewer, segment, click, wait_for):
    from reseg.data.phantom import make_oct_phantom

    phantom = make_oct_phantom(n_bscans=2, height=224, width=192, seed=5)
    viewer.add_image(phantom.image, name="from a script")  # no file, no spacing: a layer of another origin
    assert segment.model_combo.currentText() == "lightreseg-oct"
    click(segment.run_button)
    wait_for(segment)
    assert viewer.layers["from a script labels"].data.any()


def test_mismatched_checkpoint_is_refused_with_the_cause(viewer, segment, tmp_path, monkeypatch):
    import napari_reseg._segment_widget as module

    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    segment.add_checkpoint(str(broken))
    assert errors and "broken.pth" in errors[0] and "no model card" in errors[0]
    assert segment.model_combo.currentText() != "Load checkpoint..."


@pytest.mark.slow
def test_model_error_in_the_worker_becomes_a_notification(
    viewer, segment, small_oct, click, wait_for, tmp_path, monkeypatch
):
    import shutil

    import napari_reseg._segment_widget as module
    from reseg.zoo.catalogue import bundled_model_dir

    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    shutil.copy(bundled_model_dir() / "lightreseg-oct.json", tmp_path / "damaged.json")
    (tmp_path / "damaged.safetensors").write_bytes(b"\x00" * 64)
    segment.add_checkpoint(str(tmp_path / "damaged.json"))
    assert segment.model_combo.currentText().startswith("lightreseg-oct (damaged")
    click(segment.run_button)
    wait_for(segment)
    assert len(errors) == 1 and "damaged.safetensors" in errors[0] and "failed" in errors[0]
    assert "failed" in segment.status.text() and segment.run_button.isEnabled()


def test_rgb_label_and_4d_layers_are_not_offered_as_scans(viewer, segment):
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="some labels")
    viewer.add_image(np.zeros((2, 3, 16, 16), np.uint8), name="time series")
    offered = [segment.image_combo.itemText(i) for i in range(segment.image_combo.count())]
    assert offered == []


@pytest.mark.slow
def test_post_processing_can_be_switched_off_on_a_real_scan(viewer, segment, shared_data, click, wait_for):
    """On the Spectralis line scan the network alone calls part of the vitreous noise fluid; the card's
    layer_surfaces clears it, and unticking the box shows the network's own output for comparison."""
    from reseg.inference.segmentation import segment as segment_volume
    from reseg.io import read_volume
    from reseg.zoo.weights import load_model

    path = shared_data("spectralis_vol", "Willis_B_716_0.vol")
    [image] = viewer.open(str(path), plugin="napari-reseg")
    assert segment.model_combo.currentText() == "lightreseg-oct"
    assert segment.postprocess_check.isVisibleTo(segment) and segment.postprocess_check.isChecked()
    assert "layer_surfaces" in segment.postprocess_check.toolTip()

    click(segment.run_button)
    wait_for(segment)
    cleaned = np.array(viewer.layers[f"{image.name} labels"].data).reshape(-1, *image.data.shape[-2:])
    segment.postprocess_check.setChecked(False)
    click(segment.run_button)
    wait_for(segment)
    raw = np.array(viewer.layers[f"{image.name} labels"].data).reshape(cleaned.shape)

    volume = read_volume(path)
    expected = segment_volume(
        load_model("lightreseg-oct", device="cpu"), volume.data, raw=True, pixel_spacing=volume.pixel_spacing
    ).labels
    np.testing.assert_array_equal(raw, expected)
    ilm = volume.metadata["boundaries"]["ILM"][0]
    above_ilm = np.arange(raw.shape[1])[:, None] < np.nan_to_num(ilm, nan=0)[None, :] - 5
    assert (raw[0][above_ilm] == 9).sum() > 1000  # "fluid" in the vitreous
    assert (cleaned[0][above_ilm] == 9).sum() == 0

    segment.model_combo.setCurrentText("l2gnet-ct")  # another card, another step: the switch names it
    assert segment.postprocess_check.isVisibleTo(segment) and "confine_to_body" in segment.postprocess_check.toolTip()


def test_a_card_without_post_processing_gets_no_switch(user_models, dock, qtbot):
    import json
    import shutil

    from reseg.zoo.catalogue import bundled_model_dir

    user_models.mkdir(parents=True, exist_ok=True)
    card = json.loads((bundled_model_dir() / "lightreseg-oct.json").read_text())
    shutil.copy(bundled_model_dir() / "lightreseg-oct.safetensors", user_models / "plain.safetensors")
    (user_models / "plain.json").write_text(json.dumps({**card, "name": "plain", "postprocessing": []}))
    segment = dock("Segment")
    qtbot.waitUntil(lambda: segment.model_combo.findText("plain") >= 0, timeout=3000)
    segment.model_combo.setCurrentText("plain")
    assert not segment.postprocess_check.isVisibleTo(segment)
    segment.model_combo.setCurrentText("lightreseg-oct")
    assert segment.postprocess_check.isVisibleTo(segment)


def test_image_layers_of_other_kinds_still_get_a_scan_identity(viewer, segment):
    layer = viewer.add_image(np.zeros((3, 20, 20), np.float32) - 1000, name="hu stack")
    assert isinstance(viewer.layers["hu stack"], Image)
    segment.image_combo.setCurrentText("hu stack")
    assert segment.model_combo.currentText() == "l2gnet-ct"  # Hounsfield units: a CT scan
    assert layer.metadata["reseg"].modality == "CT"


def test_a_model_kept_outside_the_window_appears_in_the_model_list(user_models, dock, qtbot):
    """`reseg finetune` in a terminal keeps its model in the user folder; the open widget lists it, and drops it
    when it is removed, without reopening."""
    import json
    import shutil

    from reseg.zoo.catalogue import bundled_model_dir

    segment = dock("Segment")
    names = lambda: [segment.model_combo.itemText(i) for i in range(segment.model_combo.count())]  # noqa: E731
    assert "mine" not in names()
    card = json.loads((bundled_model_dir() / "lightreseg-oct.json").read_text())
    shutil.copy(bundled_model_dir() / "lightreseg-oct.safetensors", user_models / "mine.safetensors")  # weights first
    (user_models / "mine.json").write_text(json.dumps({**card, "name": "mine"}))
    qtbot.waitUntil(lambda: "mine" in names(), timeout=3000)
    (user_models / "mine.json").unlink()
    qtbot.waitUntil(lambda: "mine" not in names(), timeout=3000)
