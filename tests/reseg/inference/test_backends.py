"""Inference backends: the ONNX Runtime path against eager PyTorch on the real scans, its cache, the switch to
plain PyTorch and the fallback when ONNX Runtime is missing or the export fails."""

from __future__ import annotations

import dataclasses
import logging
import sys

import numpy as np
import pytest
import torch

from reseg.errors import ResegError
from reseg.inference.segmentation import iter_segment
from reseg.io import read_volume
from reseg.preprocessing.normalization import normalize_slices
from reseg.preprocessing.resampling import resize_batch, spacing_grid
from reseg.zoo.weights import load_model

onnxruntime = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
onnx = pytest.importorskip("onnx", reason="the [onnx] extra is not installed")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """One graph cache for the module: each bundled model is exported once here."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESEG_CACHE_DIR", str(folder))
        yield folder


def _real_slices(shared_data, name: str) -> list[tuple[np.ndarray, tuple[float, float] | None]]:
    """(slice, pixel spacing) of the real scans a model is for."""
    if name == "l2gnet-ct":
        volume = read_volume(shared_data("ct_totalseg", "example_ct_sm.nii.gz"))
        return [(volume.data[z], volume.pixel_spacing) for z in (5, 15, 25)]
    slices = []
    for file in ("Willis_B_716_0.vol", "Willis_B_716_2.vol"):
        volume = read_volume(shared_data("spectralis_vol", file))
        slices.append((volume.data[0], volume.pixel_spacing))
    for file in ("subject01_bscan06.png", "subject08_bscan10.png"):
        volume = read_volume(shared_data("duke_dme", "images", file))
        slices.append((volume.data[0], volume.pixel_spacing))
    return slices


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lightreseg-oct", "l2gnet-ct"])
def test_onnx_runtime_gives_the_labels_and_logits_of_eager_pytorch_on_real_scans(onnx_cache, shared_data, name):
    model = load_model(name, device="cpu")  # "auto": ONNX Runtime on the CPU where it is installed
    eager = dataclasses.replace(model, backend=None)  # the trained network as `segment` ran it before
    assert model.backend is not None
    same = pixels = 0
    worst = 0.0
    for image, spacing in _real_slices(shared_data, name):
        batch = torch.from_numpy(normalize_slices(image[None], model.card.normalization))[:, None]
        batch = resize_batch(batch, spacing_grid(image.shape, spacing, model.card.input_spacing))
        with torch.inference_mode():
            expected = eager.network(batch)
            got = model.backend.logits(batch)
        assert model.backend.name == "onnx"  # the graph was made and runs: no silent fallback
        worst = max(worst, float((got - expected).abs().max()))
        same += int((got.argmax(1) == expected.argmax(1)).sum())
        pixels += expected[:, 0].numel()
    assert worst <= 1e-3, worst
    assert same / pixels >= 0.9999
    graph = onnx.load(str(next((onnx_cache / "onnx").glob(f"{name}-*.onnx"))))
    fused = [node for node in graph.graph.node if node.op_type == "MultiHeadAttention"]
    assert len(fused) == (3 if name == "lightreseg-oct" else 0)  # every Transformer layer in one kernel


def test_the_graph_is_exported_once_per_weights_and_reused(onnx_cache, caplog):
    with caplog.at_level(logging.INFO, logger="reseg.inference.backends"):
        first = load_model("l2gnet-ct", device="cpu", backend="onnx")
        labels = np.zeros((2, 40, 48), np.uint8)
        scan = np.random.default_rng(0).normal(40, 150, (2, 40, 48)).astype(np.int16)
        list(iter_segment(first, scan, labels, raw=True))
    graphs = list((onnx_cache / "onnx").glob("l2gnet-ct-*.onnx"))
    assert len(graphs) == 1 and first.backend is not None and first.backend.name == "onnx"
    written = graphs[0].stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reseg.inference.backends"):
        second = load_model("l2gnet-ct", device="cpu")
        again = np.zeros_like(labels)
        list(iter_segment(second, scan, again, raw=True))
    assert "exporting" not in caplog.text  # found in the cache
    assert graphs[0].stat().st_mtime_ns == written
    np.testing.assert_array_equal(again, labels)


def test_a_failed_export_falls_back_to_pytorch_and_says_so_once(tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("RESEG_CACHE_DIR", str(blocked))
    model = load_model("l2gnet-ct", device="cpu")
    scan = np.random.default_rng(1).normal(40, 150, (3, 40, 48)).astype(np.int16)
    labels, eager_labels = np.zeros(scan.shape, np.uint8), np.zeros(scan.shape, np.uint8)
    with caplog.at_level(logging.WARNING, logger="reseg.inference.backends"):
        progress = list(iter_segment(model, scan, labels, raw=True))
    assert [record.levelname for record in caplog.records] == ["WARNING"]  # once, for three batches
    assert "inference runs in PyTorch" in caplog.text
    assert model.backend is not None and model.backend.name == "torch" and len(progress) == 3
    list(iter_segment(dataclasses.replace(model, backend=None), scan, eager_labels, raw=True))
    assert (labels == eager_labels).mean() >= 0.999  # the folded network in PyTorch: the same up to rounding


def test_without_onnxruntime_auto_is_pytorch_and_onnx_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    assert load_model("l2gnet-ct", device="cpu").backend.name == "torch"
    with pytest.raises(ResegError, match=r"napari-reseg\[onnx\]"):
        load_model("l2gnet-ct", device="cpu", backend="onnx")


def test_the_switch_forces_plain_pytorch_and_names_a_wrong_choice(monkeypatch):
    monkeypatch.setenv("RESEG_BACKEND", "torch")
    assert load_model("l2gnet-ct", device="cpu").backend.name == "torch"
    monkeypatch.setenv("RESEG_BACKEND", "tensorrt")
    with pytest.raises(ResegError, match=r"RESEG_BACKEND .tensorrt.*auto, torch, onnx"):
        load_model("l2gnet-ct", device="cpu")


def test_the_engine_picks_one_slice_per_batch_on_the_cpu():
    model = load_model("l2gnet-ct", device="cpu", backend="torch")
    labels = np.zeros((2, 32, 48), np.uint8)
    progress = list(iter_segment(model, np.zeros((2, 32, 48), np.uint8), labels, raw=True))
    assert [p.batch_size for p in progress] == [1, 1]
