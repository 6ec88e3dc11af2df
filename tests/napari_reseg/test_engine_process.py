"""The engine process as the widgets use it: it segments as the engine does in-process, stops after a batch
when asked, reports its errors as themselves, and a crash is a clear error after which it starts again."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_reseg._engine_process import Batch, EngineProcess, EngineStopped
from reseg.data.phantom import make_oct_phantom
from reseg.errors import CheckpointError
from reseg.zoo.catalogue import bundled_model_dir


@pytest.fixture
def engine():
    process = EngineProcess()
    yield process
    process.close()


def _segment(engine, image, batch_size=1, model="lightreseg-oct"):
    return engine.run(
        "segment",
        model_ref=model,
        weights_sha256=None,
        device="cpu",
        image=image,
        slices=list(range(len(image))),
        batch_size=batch_size,
        pixel_spacing=None,
        raw=False,
        with_confidence=True,
    )


@pytest.mark.slow
def test_batches_come_back_as_the_engine_segments_in_process(engine):
    from reseg.inference.segmentation import segment
    from reseg.zoo.weights import load_model

    image = make_oct_phantom(n_bscans=3, height=224, width=160, seed=7).image
    assert engine.wait_ready()[-1] == "cpu"
    messages = _segment(engine, image, batch_size=2)
    assert next(messages) == "cpu"
    batches = list(messages)
    # the first slice alone (napari shows it at once), then batches of the size asked for
    assert [b.slices for b in batches] == [(0,), (1, 2)] and all(isinstance(b, Batch) for b in batches)
    labels = np.concatenate([b.labels for b in batches])
    expected = segment(load_model("lightreseg-oct", device="cpu"), image, with_confidence=True)
    np.testing.assert_array_equal(labels, expected.labels)
    np.testing.assert_allclose(np.concatenate([b.confidence for b in batches]), expected.confidence, atol=1e-5)


@pytest.mark.slow
def test_stop_ends_the_run_after_its_batch(engine):
    image = make_oct_phantom(n_bscans=6, height=224, width=160, seed=8).image
    messages = _segment(engine, image)
    next(messages)
    first = next(messages)
    engine.stop()
    rest = list(messages)
    assert first.done == 1 and len(rest) <= 1  # the batch in progress when asked may still arrive
    again = list(_segment(engine, image[:3], batch_size=2))
    assert [b.slices for b in again[1:]] == [(0,), (1, 2)]  # the next run is whole: the stop was for the last one


@pytest.mark.slow
def test_errors_in_the_process_arrive_as_themselves(engine, tmp_path):
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(b"\0" * 16)
    shutil.copy(bundled_model_dir() / "lightreseg-oct.json", tmp_path / "broken.json")
    with pytest.raises(CheckpointError, match=r"broken\.safetensors"):
        list(_segment(engine, np.zeros((1, 64, 64), np.uint8), model=str(weights)))


@pytest.mark.slow
def test_a_killed_process_is_a_clear_error_and_starts_again(engine):
    engine.wait_ready()
    engine._process.kill()  # what the system's out-of-memory killer does
    with pytest.raises(EngineStopped, match="stopped unexpectedly"):
        list(_segment(engine, np.zeros((1, 64, 64), np.uint8)))
    engine.start()
    assert engine.wait_ready()
