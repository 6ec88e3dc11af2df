"""Inference: shapes and geometry, progress and cancellation, confidence, spacing, and real quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reseg.classes import OCT_CLASSES, OCT_FLUID
from reseg.data.phantom import make_oct_phantom
from reseg.devices import available_devices, resolve_device
from reseg.errors import DeviceMemoryError, ResegError
from reseg.evaluation.evaluate import boundary_rows
from reseg.evaluation.metrics import per_class_scores, summarize
from reseg.inference.segmentation import iter_segment, segment
from reseg.io import read_volume
from reseg.models import build_network
from reseg.topology import check_oct_topology
from reseg.zoo.cards import read_card
from reseg.zoo.catalogue import bundled_model_dir
from reseg.zoo.weights import LoadedModel, load_model


class CountingNetwork(torch.nn.Module):
    """Wraps a network and records the input shape of every call."""

    def __init__(self, network):
        super().__init__()
        self.network, self.calls = network, []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return self.network(x)


@pytest.fixture(scope="module")
def tiny_model() -> LoadedModel:
    """An untrained 3-class LightReSeg: fast, for testing the mechanics rather than the quality."""
    card = read_card(bundled_model_dir() / "lightreseg-oct.json")
    card.classes, card.arguments = card.classes[:3], {**card.arguments, "num_classes": 3}
    card.postprocessing = []  # its rules are written for the 10 OCT classes
    network = build_network(card.architecture, card.arguments).eval()
    return LoadedModel(CountingNetwork(network), card, torch.device("cpu"), bundled_model_dir())


def test_stack_and_single_image_keep_their_shape(tiny_model):
    stack = np.random.default_rng(0).integers(0, 255, (5, 45, 70), dtype=np.uint8)
    result = segment(tiny_model, stack, batch_size=2, with_confidence=True)
    assert result.labels.shape == stack.shape and result.labels.dtype == np.uint8
    assert result.labels.max() < 3
    assert result.confidence.shape == stack.shape
    assert np.all(result.confidence >= 1 / 3 - 1e-6) and np.all(result.confidence <= 1 + 1e-6)
    single = segment(tiny_model, stack[0], batch_size=2)
    assert single.labels.shape == stack[0].shape
    np.testing.assert_array_equal(single.labels, result.labels[0])


def test_progress_is_reported_per_batch_and_results_fill_in_as_they_finish(tiny_model):
    stack = np.random.default_rng(1).integers(0, 255, (7, 32, 48), dtype=np.uint8)
    labels = np.full(stack.shape, 99, dtype=np.uint8)
    events = []
    for progress in iter_segment(tiny_model, stack, labels, batch_size=3):
        events.append(progress)
        assert np.all(labels[: progress.done] < 3) and np.all(labels[progress.done :] == 99)
    assert [e.done for e in events] == [3, 6, 7]
    assert events[-1].slices == (6,) and events[-1].total == 7


def test_a_small_first_batch_puts_the_first_slice_out_before_the_rest(tiny_model):
    stack = np.random.default_rng(3).integers(0, 255, (7, 32, 48), dtype=np.uint8)
    labels = np.full(stack.shape, 99, dtype=np.uint8)
    order = [5, 0, 1, 2, 3, 4, 6]  # the slice on screen first, as the plugin asks
    events = list(iter_segment(tiny_model, stack, labels, batch_size=3, slices=order, first_batch_size=1))
    assert [e.slices for e in events] == [(5,), (0, 1, 2), (3, 4, 6)]
    assert np.all(labels < 3)


def test_closing_the_generator_cancels_between_batches(tiny_model):
    stack = np.zeros((10, 32, 32), dtype=np.uint8)
    labels = np.full(stack.shape, 99, dtype=np.uint8)
    tiny_model.network.calls.clear()
    run = iter_segment(tiny_model, stack, labels, batch_size=2)
    next(run)
    run.close()
    assert len(tiny_model.network.calls) == 1
    assert np.all(labels[2:] == 99)


def test_only_requested_slices_are_computed(tiny_model):
    stack = np.random.default_rng(2).integers(0, 255, (6, 32, 32), dtype=np.uint8)
    labels = np.full(stack.shape, 99, dtype=np.uint8)
    list(iter_segment(tiny_model, stack, labels, slices=[4]))
    assert np.all(labels[4] < 3) and np.all(labels[[0, 1, 2, 3, 5]] == 99)


def test_slices_are_resampled_to_the_cards_spacing_and_back(tiny_model):
    tiny_model.card.input_spacing = [3.0, 3.0]
    try:
        tiny_model.network.calls.clear()
        result = segment(tiny_model, np.zeros((1, 90, 60), dtype=np.int16), pixel_spacing=(1.0, 1.0))
        assert tiny_model.network.calls == [(1, 1, 30, 20)]
        assert result.labels.shape == (1, 90, 60)
        tiny_model.network.calls.clear()
        segment(tiny_model, np.zeros((1, 90, 60), dtype=np.int16), pixel_spacing=None)
        assert tiny_model.network.calls == [(1, 1, 90, 60)]
    finally:
        tiny_model.card.input_spacing = None


def test_device_selection():
    assert available_devices()[-1] == "cpu"
    assert resolve_device("auto").type == available_devices()[0]
    assert resolve_device("cpu").type == "cpu"
    if "cuda" not in available_devices():
        with pytest.raises(ResegError, match="device 'cuda' is not available here"):
            resolve_device("cuda")
    with pytest.raises(ResegError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.slow
def test_bundled_oct_model_segments_unseen_phantoms_accurately():
    """Seeds far from the training seeds: the bundled model must recover the layers of new anatomy."""
    phantom = make_oct_phantom(n_bscans=3, seed=9001, fluid=True)
    model = load_model("lightreseg-oct", device="cpu")
    result = segment(model, phantom.image, batch_size=3)
    summary = summarize(per_class_scores(result.labels, phantom.labels, len(OCT_CLASSES)), skip_classes=(0,))
    assert summary["mean_dice"] > 0.8, summary


def test_bundled_ct_model_reproduces_its_training_scan_through_the_reader(shared_data):
    """A regression test of the whole path (NIfTI reader, HU window, 3 mm resampling, L2GNet) on the real
    scan the demonstration model was trained on: not an accuracy claim."""
    volume = read_volume(shared_data("ct_totalseg", "example_ct_sm.nii.gz"))
    truth = read_volume(shared_data("ct_totalseg", "example_seg.nii.gz")).data
    model = load_model("l2gnet-ct", device="cpu")
    result = segment(model, volume.data, batch_size=8, pixel_spacing=volume.pixel_spacing)
    liver_truth, liver_found = truth == 5, result.labels == 5  # TotalSegmentator id 5 and Synapse index 5: liver
    dice = 2 * (liver_truth & liver_found).sum() / (liver_truth.sum() + liver_found.sum())
    assert dice > 0.7, dice


class SmallMemoryNetwork(torch.nn.Module):
    """Raises out-of-memory for batches larger than `fits`, like a GPU too small for the chosen batch."""

    def __init__(self, network, fits: int):
        super().__init__()
        self.network, self.fits = network, fits

    def forward(self, x):
        if len(x) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.network(x)


def test_out_of_memory_retries_with_smaller_batches(tiny_model):
    model = LoadedModel(
        SmallMemoryNetwork(tiny_model.network, fits=2), tiny_model.card, tiny_model.device, tiny_model.weights_path
    )
    stack = np.random.default_rng(3).integers(0, 255, (5, 32, 32), dtype=np.uint8)
    labels = np.full(stack.shape, 99, dtype=np.uint8)
    events = list(iter_segment(model, stack, labels, batch_size=8))
    assert [e.batch_size for e in events] == [2, 2, 2] and events[-1].done == 5
    assert np.all(labels < 3)
    model.network.fits = 0
    with pytest.raises(DeviceMemoryError, match="even at batch size 1"):
        list(iter_segment(model, stack, labels, batch_size=4))


def test_per_slice_confidence_is_the_mean_of_the_pixel_confidence(tiny_model):
    stack = np.random.default_rng(4).integers(0, 255, (3, 32, 40), dtype=np.uint8)
    labels = np.zeros(stack.shape, np.uint8)
    pixels = np.zeros(stack.shape, np.float32)
    per_slice = np.full(3, np.nan, np.float32)
    list(iter_segment(tiny_model, stack, labels, confidence_out=pixels, slice_confidence_out=per_slice))
    np.testing.assert_allclose(per_slice, pixels.mean(axis=(1, 2)), rtol=1e-5)


def test_a_card_with_layer_surfaces_gives_ordered_labels_and_their_surfaces():
    model = load_model("lightreseg-oct", device="cpu")
    model.card.postprocessing = ["layer_surfaces"]
    phantom = make_oct_phantom(n_bscans=2, height=224, width=160, seed=8)
    result = segment(model, phantom.image, batch_size=2)
    assert result.surfaces is not None and result.surfaces.shape == (8, 2, 160)
    assert check_oct_topology(result.labels).ok
    layers = np.where(result.labels == OCT_FLUID, 5, result.labels)  # fluid sits inside the retina's rows
    np.testing.assert_array_equal(boundary_rows(layers)[[0, -1]], result.surfaces[[0, -1]])
    raw = segment(model, phantom.image, batch_size=2, raw=True)
    assert raw.surfaces is None and not np.array_equal(raw.labels, result.labels)


def test_lateral_flip_averaging_makes_the_labels_of_a_mirrored_scan_the_mirror_of_the_labels():
    from dataclasses import replace

    model = load_model("lightreseg-oct", device="cpu")
    averaged = replace(model, card=replace(model.card, test_time_augmentation=["lateral_flip"]))
    image = make_oct_phantom(n_bscans=1, height=224, width=160, seed=12).image
    plain, mirrored = segment(averaged, image), segment(averaged, image[..., ::-1].copy())
    assert np.mean(mirrored.labels[..., ::-1] == plain.labels) > 0.999
    unaveraged = segment(model, image[..., ::-1].copy()).labels[..., ::-1]
    assert np.mean(unaveraged != segment(model, image).labels) > np.mean(mirrored.labels[..., ::-1] != plain.labels)


def test_a_card_naming_an_unknown_test_time_augmentation_is_refused(tmp_path):
    import json

    from reseg.errors import CheckpointError

    data = json.loads((bundled_model_dir() / "lightreseg-oct.json").read_text())
    data["test_time_augmentation"] = ["lateral_flip", "rotate"]
    (tmp_path / "odd.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"odd\.json: model card field 'test_time_augmentation' names 'rotate'"):
        read_card(tmp_path / "odd.json")
