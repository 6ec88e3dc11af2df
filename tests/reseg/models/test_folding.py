"""Inference folds: the folded bundled networks compute the same logits as the networks they came from."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from reseg.data.ct_phantom import make_ct_phantom
from reseg.data.phantom import make_oct_phantom
from reseg.models.lightreseg import FoldedAsymmetricAttention
from reseg.preprocessing.normalization import normalize_slices
from reseg.zoo.weights import load_model


def _scan(name: str) -> np.ndarray:
    if name == "lightreseg-oct":  # a phantom B-scan of a size padding has to round up (reflect)
        return make_oct_phantom(n_bscans=2, height=232, width=200, seed=3).image
    return make_ct_phantom(n_slices=2, size=112, seed=3).image


@pytest.mark.parametrize("name", ["lightreseg-oct", "l2gnet-ct"])
def test_folded_bundled_network_gives_the_logits_of_the_network(name):
    model = load_model(name, device="cpu", backend="torch")
    images = torch.from_numpy(normalize_slices(_scan(name), model.card.normalization))[:, None]
    folded = model.network.folded_for_inference()
    with torch.inference_mode():
        expected, got = model.network(images), folded(images)
    assert float((got - expected).abs().max()) <= 1e-4
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # what was folded is gone: no batch norm is left directly after a convolution
    for sequence in (m for m in folded.modules() if isinstance(m, nn.Sequential)):
        layers = list(sequence)
        assert not any(
            isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) for a, b in itertools.pairwise(layers)
        )
    assert not any(p.requires_grad for p in folded.parameters())
    assert model.network.training is False and any(p.requires_grad for p in model.network.parameters())


def test_lightreseg_folds_every_decoder_attention_and_keeps_the_trained_network_whole():
    model = load_model("lightreseg-oct", device="cpu", backend="torch")
    folded = model.network.folded_for_inference()
    assert all(isinstance(step.skip_attention, FoldedAsymmetricAttention) for step in folded.decoder)
    # the loaded network stays as trained (fine-tuning starts from it) and its state dict still loads
    assert not any(isinstance(m, FoldedAsymmetricAttention) for m in model.network.modules())
    assert set(model.network.state_dict()) == set(type(model.network)(num_classes=10).state_dict())
