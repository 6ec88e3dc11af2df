"""The contract every architecture must satisfy; a newly added one is tested automatically."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from reseg.models import ARCHITECTURES, build_network, count_parameters
from reseg.models.base import SegmentationNetwork


def _build(architecture: str, in_channels: int = 1, num_classes: int = 3, seed: int = 0) -> SegmentationNetwork:
    torch.manual_seed(seed)
    return ARCHITECTURES[architecture](in_channels=in_channels, num_classes=num_classes)


def _training_step(network: SegmentationNetwork, shape: tuple[int, ...]) -> torch.Tensor:
    """One cross-entropy + auxiliary-loss backward pass on random data; returns the logits."""
    network.train()
    logits = network(torch.randn(shape))
    target = torch.randint(0, network.num_classes, (shape[0], *shape[2:]))
    (F.cross_entropy(logits, target) + network.auxiliary_loss()).backward()
    return logits


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
class TestArchitectureContract:
    @pytest.mark.slow
    @pytest.mark.parametrize("shape", [(1, 1, 203, 317), (2, 1, 496, 768)])
    def test_forward_backward_at_any_size(self, architecture: str, shape: tuple[int, ...]) -> None:
        network = _build(architecture)
        logits = _training_step(network, shape)
        assert logits.shape == (shape[0], 3, *shape[2:])
        assert torch.isfinite(logits).all()
        without_gradient = [
            name
            for name, parameter in network.named_parameters()
            if parameter.grad is None or not parameter.grad.any() or not torch.isfinite(parameter.grad).all()
        ]
        assert without_gradient == []

    def test_safetensors_round_trip(self, architecture: str, tmp_path) -> None:
        network = _build(architecture, num_classes=10)
        _training_step(network, (1, 1, 64, 80))  # move normalisation statistics etc. off their initial values
        network.eval()
        path = tmp_path / "weights.safetensors"
        save_file(network.state_dict(), str(path))

        fresh = _build(architecture, num_classes=10, seed=1).eval()
        x = torch.randn(1, 1, 75, 97)
        with torch.no_grad():
            assert not torch.equal(fresh(x), network(x))
            fresh.load_state_dict(load_file(str(path)))
            assert torch.equal(fresh(x), network(x))

    def test_eval_is_deterministic(self, architecture: str) -> None:
        network = _build(architecture).eval()
        x = torch.randn(2, 1, 90, 70)
        with torch.no_grad():
            assert torch.equal(network(x), network(x))
        assert network.auxiliary_loss().item() == 0.0

    def test_three_input_channels(self, architecture: str) -> None:
        network = _build(architecture, in_channels=3, num_classes=10).eval()
        with torch.no_grad():
            assert network(torch.randn(1, 3, 50, 61)).shape == (1, 10, 50, 61)

    def test_wrong_input_shape_raises(self, architecture: str) -> None:
        network = _build(architecture).eval()
        with pytest.raises(ValueError):
            network(torch.randn(1, 2, 32, 32))
        with pytest.raises(ValueError):
            network(torch.randn(1, 32, 32))

    def test_builds_from_json_arguments(self, architecture: str) -> None:
        """Model cards store constructor arguments as JSON; the defaults must survive that round trip."""
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(ARCHITECTURES[architecture]).parameters.items()
        }
        network = build_network(architecture, json.loads(json.dumps(defaults)))
        assert count_parameters(network) > 0


def test_lightreseg_parameter_count_matches_paper() -> None:
    assert 3_234_000 <= count_parameters(ARCHITECTURES["lightreseg"](num_classes=7)) <= 3_366_000
