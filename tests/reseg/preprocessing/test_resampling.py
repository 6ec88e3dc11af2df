"""Resampling to a model's spacing: anti-aliased when shrinking, and the same pixels for training and inference."""

from __future__ import annotations

import numpy as np
import torch

from reseg.data.dataset import Scan
from reseg.inference.segmentation import segment
from reseg.models import build_network
from reseg.preprocessing.resampling import resample_image, resample_labels, spacing_grid
from reseg.train.data import model_slices
from reseg.zoo.cards import read_card
from reseg.zoo.catalogue import bundled_model_dir
from reseg.zoo.weights import LoadedModel


def test_shrinking_averages_fine_detail_instead_of_aliasing_it():
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (66, 33))  # 1-pixel columns of 0 and 1
    shrunk = resample_image(stripes, (22, 22))  # 3x smaller: plain bilinear lands on single columns (0 or 1)
    assert abs(float(shrunk.mean()) - 0.5) < 0.02 and float(np.ptp(shrunk[2:-2, 2:-2])) < 0.2


def test_labels_keep_every_value_they_had():
    labels = np.zeros((40, 40), np.uint8)
    labels[10:30, 10:30], labels[18:22, 18:22] = 3, 255  # a class and an ignore patch
    assert set(np.unique(resample_labels(labels, (20, 20)))) == {0, 3, 255}


class RecordingNetwork(torch.nn.Module):
    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network, self.inputs = network, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.network(x)


def test_inference_feeds_the_network_the_pixels_training_would_give_it():
    card = read_card(bundled_model_dir() / "l2gnet-ct.json")
    card.postprocessing, card.input_spacing = [], [3.0, 3.0]
    network = RecordingNetwork(build_network(card.architecture, card.arguments).eval())
    model = LoadedModel(network, card, torch.device("cpu"), bundled_model_dir())
    rng = np.random.default_rng(3)
    scan = rng.normal(40, 200, (2, 96, 80)).astype(np.int16)
    pixel_spacing = (0.8, 1.1)
    segment(model, scan, batch_size=2, pixel_spacing=pixel_spacing)
    seen = network.inputs[0][:, 0].numpy()
    training = Scan("ct", scan, np.zeros_like(scan, np.uint8), (3.0, *pixel_spacing))
    images, _ = model_slices([training], card.normalization, card.input_spacing)
    assert seen.shape[-2:] == spacing_grid((96, 80), pixel_spacing, card.input_spacing) == (26, 29)
    np.testing.assert_allclose(seen, np.stack(images), atol=1e-5)
