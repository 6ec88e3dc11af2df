"""The Segment widget as a user drives it: run, watch, cancel, switch layers mid-run, re-run over edits."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels

from reseg.classes import OCT_CLASSES
from reseg.metrics import per_class_scores, summarize


def _choose(widget, image="scan", model="lightreseg-oct", scope="whole volume", batch=2):
    widget.image_combo.setCurrentText(image)
    widget.model_combo.setCurrentText(model)
    widget.scope_combo.setCurrentText(scope)
    widget.batch_spin.setValue(batch)


def test_whole_volume_run_gives_a_named_coloured_labels_layer_in_register(viewer, widget, small_oct, wait_for_run):
    image, phantom = small_oct
    assert widget.model_combo.findText("lightreseg-oct") >= 0 and widget.model_combo.findText("l2gnet-ct") >= 0
    assert widget.device_combo.currentData() == "auto"
    _choose(widget)
    widget.confidence_check.setChecked(True)
    batches = []
    worker = widget.start()
    worker.yielded.connect(batches.append)
    wait_for_run(widget)

    labels = viewer.layers["scan labels"]
    assert isinstance(labels, Labels) and not labels.multiscale
    assert labels.data.shape == image.data.shape and labels.data.dtype == np.uint8
    np.testing.assert_allclose(labels.scale, image.scale)
    assert list(labels.features["class"]) == [c.name for c in OCT_CLASSES]
    rnfl = OCT_CLASSES[1]
    np.testing.assert_allclose(labels.colormap.map(np.array([1]))[0][:3], np.array(rnfl.color) / 255, atol=1e-3)
    assert batches == [0, 2, 4]  # model loaded, then one report per batch of 2 B-scans
    summary = summarize(per_class_scores(labels.data, phantom.labels, 10), skip_classes=(0,))
    assert summary["mean_dice"] > 0.6, summary

    confidence = viewer.layers["scan confidence"]
    assert confidence.data.shape == image.data.shape and 0.1 < confidence.data.min() <= confidence.data.max() <= 1
    assert "ran on cpu" in widget.status.text()
    assert widget.legend.rowCount() == 10
    counts = [int(widget.legend.item(row, 2).text().replace(",", "")) for row in range(10)]
    assert counts == list(np.bincount(labels.data.ravel(), minlength=10))
    assert widget.legend.item(1, 1).text() == "RNFL"


def test_current_slice_scope_computes_only_the_slice_on_screen(viewer, widget, small_oct, wait_for_run):
    _choose(widget, scope="current slice")
    viewer.dims.set_current_step(0, 2)
    widget.start()
    wait_for_run(widget)
    labels = viewer.layers["scan labels"].data
    assert labels[2].any() and not labels[[0, 1, 3]].any()


def test_cancel_stops_within_a_batch_and_keeps_finished_slices(viewer, widget, wait_for_run):
    from reseg.data.phantom import make_oct_phantom

    phantom = make_oct_phantom(n_bscans=12, height=224, width=192, seed=2)
    viewer.add_image(phantom.image, name="long", scale=phantom.spacing)
    _choose(widget, image="long", batch=1)
    worker = widget.start()
    worker.yielded.connect(lambda done: widget.cancel() if done == 1 else None)
    wait_for_run(widget)
    labels = viewer.layers["long labels"].data
    done = widget.run.done
    assert 1 <= done <= 2, done
    assert labels[:done].any() and not labels[done:].any()
    assert "cancelled after" in widget.status.text()


def test_result_goes_to_the_layer_it_was_computed_for(viewer, widget, small_oct, wait_for_run):
    _choose(widget, batch=1)
    worker = widget.start()

    def switch_away(done):
        if done == 1:  # mid-run: the user selects and opens other things
            other = viewer.add_image(np.zeros((4, 224, 192), np.uint8), name="other scan")
            viewer.layers.selection.active = other
            widget.image_combo.setCurrentText("other scan")

    worker.yielded.connect(switch_away)
    wait_for_run(widget)
    assert all(viewer.layers["scan labels"].data[z].any() for z in range(4))
    assert "other scan labels" not in viewer.layers


def test_rerun_asks_before_overwriting_user_edits(viewer, widget, small_oct, wait_for_run):
    _choose(widget)
    widget.start()
    wait_for_run(widget)
    labels = viewer.layers["scan labels"]
    labels.data[1, 50:60, 50:60] = 9  # a user's correction
    edited = labels.data.copy()
    questions = []
    widget.confirm_overwrite = lambda layer: questions.append(layer.name) or False
    assert widget.start() is None
    assert questions == ["scan labels"]
    np.testing.assert_array_equal(labels.data, edited)

    widget.confirm_overwrite = lambda layer: True
    widget.start()
    wait_for_run(widget)
    assert not np.array_equal(labels.data, edited)


def test_mismatched_checkpoint_is_refused_with_the_cause(viewer, widget, tmp_path, monkeypatch):
    import napari_reseg._segment_widget as module

    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    widget.add_checkpoint(broken)
    assert errors and "broken.pth" in errors[0] and "no model card" in errors[0]
    assert widget.model_combo.currentText() != "Load checkpoint..."


def test_model_error_in_the_worker_becomes_a_notification(viewer, widget, small_oct, wait_for_run, tmp_path, monkeypatch):
    import shutil

    import napari_reseg._segment_widget as module
    from reseg.zoo import bundled_model_dir

    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    shutil.copy(bundled_model_dir() / "lightreseg-oct.json", tmp_path / "damaged.json")
    (tmp_path / "damaged.safetensors").write_bytes(b"\x00" * 64)
    widget.add_checkpoint(tmp_path / "damaged.json")
    _choose(widget, model=widget.model_combo.currentText())
    widget.start()
    wait_for_run(widget)
    assert len(errors) == 1 and "damaged.safetensors" in errors[0] and "failed" in errors[0]
    assert "failed" in widget.status.text() and widget.run_button.isEnabled()


def test_rgb_layer_is_not_offered(viewer, widget):
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    assert widget.image_combo.findText("photo") == -1


def test_post_processing_can_be_switched_off_on_a_real_scan(viewer, widget, shared_data, wait_for_run):
    """On the Spectralis line scan the network alone calls part of the vitreous noise fluid; the card's
    confine_to_retina clears it, and unticking the box shows the network's own output for comparison."""
    from reseg.inference import segment
    from reseg.io import read_volume
    from reseg.zoo import load_model

    path = shared_data("spectralis_vol", "Willis_B_716_0.vol")
    [image] = viewer.open(str(path), plugin="napari-reseg")
    _choose(widget, image=image.name)
    assert widget.postprocess_check.isVisibleTo(widget) and widget.postprocess_check.isChecked()
    assert "confine_to_retina" in widget.postprocess_check.toolTip()

    widget.start()
    wait_for_run(widget)
    cleaned = np.array(viewer.layers[f"{image.name} labels"].data).reshape(-1, *image.data.shape[-2:])
    widget.postprocess_check.setChecked(False)
    widget.start()
    wait_for_run(widget)
    raw = np.array(viewer.layers[f"{image.name} labels"].data).reshape(cleaned.shape)

    volume = read_volume(path)
    expected = segment(load_model("lightreseg-oct", device="cpu"), volume.data, raw=True,
                       pixel_spacing=volume.pixel_spacing).labels
    np.testing.assert_array_equal(raw, expected)
    ilm = volume.metadata["boundaries"]["ILM"][0]
    above_ilm = np.arange(raw.shape[1])[:, None] < np.nan_to_num(ilm, nan=0)[None, :] - 5
    assert (raw[0][above_ilm] == 9).sum() > 1000  # "fluid" in the vitreous
    assert (cleaned[0][above_ilm] == 9).sum() == 0

    widget.model_combo.setCurrentText("l2gnet-ct")  # a card without post-processing: no switch
    assert not widget.postprocess_check.isVisibleTo(widget)
