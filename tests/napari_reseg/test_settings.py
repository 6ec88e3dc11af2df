"""The user's lasting choices live in napari's plugin settings (Preferences > napari-reseg): the manifest
declares them, the plugin's defaults agree with it, and the widgets start from what the user set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from napari_reseg._settings import Preferences, preferences

MANIFEST = Path(__file__).resolve().parents[2] / "napari.yaml"


def test_the_manifest_declares_every_preference_with_the_plugins_default():
    configurations = yaml.safe_load(MANIFEST.read_text())["contributions"]["configurations"]
    declared = {
        key: spec["default"] for section in configurations.values() for key, spec in section["properties"].items()
    }
    assert declared == {field.name: field.default for field in dataclasses.fields(Preferences)}


def test_widgets_start_from_the_users_settings(viewer, dock, reseg_settings):
    reseg_settings.segmentation.batch_size = 7
    reseg_settings.segmentation.device = "cpu"
    assert preferences().batch_size == 7
    segment = dock("Segment")
    assert segment.batch_spin.value() == 7 and segment.device_combo.currentData() == "cpu"
    finetune = dock("Fine-tune")
    assert finetune.device_combo.currentData() == "cpu"
