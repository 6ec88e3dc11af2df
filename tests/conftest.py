"""Shared test fixtures: where the real data lives, and small trained-looking models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PLUGIN_TESTS = Path(__file__).resolve().parent / "napari_reseg"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers a test cannot forget: `gui` for every plugin test (they need a display: Xvfb), `real_data` for
    every test that asks for ../shared/data. `slow`, `distributed`, `corpus` and `smoke` are set by hand."""
    for item in items:
        if PLUGIN_TESTS in Path(item.path).parents:
            item.add_marker(pytest.mark.gui)
        if {"shared_data", "shared_data_root"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture(scope="session", autouse=True)
def inference_cache(tmp_path_factory) -> Iterator[Path]:
    """Exported inference graphs go to a folder of the test session, never into the user's cache; set in the
    environment, so the plugin's engine processes use it too. One export per weights for the whole session."""
    folder = tmp_path_factory.mktemp("inference-cache")
    previous = os.environ.get("RESEG_CACHE_DIR")
    os.environ["RESEG_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("RESEG_CACHE_DIR", None)
    else:
        os.environ["RESEG_CACHE_DIR"] = previous


@pytest.fixture
def shared_data():
    """`shared_data("ct_totalseg", "x.nii.gz")`: a path under ../shared/data, or a skip with the reason when
    the real data is absent (a user's clone has no ../shared)."""

    def locate(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"real data {path} is not available (it lives beside the repository, not in it)")
        return path

    return locate


@pytest.fixture(scope="session")
def shared_data_root() -> Path | None:
    """../shared/data, or None in a clone without it (tests built on it then use synthetic files only)."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


@pytest.fixture
def user_models(tmp_path, monkeypatch) -> Path:
    """An empty user model folder that the catalogue reads instead of the real one."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv("RESEG_MODEL_DIR", str(folder))
    return folder


@pytest.fixture
def corrections(tmp_path) -> Path:
    """Five small reviewed scans (phantoms of two B-scans each), as a user would export them for fine-tuning."""
    from reseg.cli import main

    folder = tmp_path / "corrections"
    assert (
        main(
            [
                "phantom",
                str(folder),
                "--volumes",
                "5",
                "--bscans",
                "2",
                "--height",
                "224",
                "--width",
                "128",
                "--seed",
                "40",
            ]
        )
        == 0
    )
    return folder
