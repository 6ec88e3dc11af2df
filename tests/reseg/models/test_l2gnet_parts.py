"""L2GNet's own parts: Sinkhorn transport, the straight-through quantiser, codebook usage and dead-code re-seeding."""

from __future__ import annotations

import pytest
import torch

from reseg.models.l2gnet import L2GNet, VectorQuantizer, sinkhorn

SMALL = {"widths": [8, 16, 32, 64], "bottleneck_channels": 64, "code_dim": 8, "num_codes": 32, "num_slots": 8}


def test_sinkhorn_marginals_are_uniform() -> None:
    torch.manual_seed(0)
    batch, n, p = 4, 300, 64
    cost = torch.rand(batch, n, p) * 2 - 1  # the range of a negative cosine similarity
    plan = sinkhorn(cost, epsilon=0.1, iterations=20)
    assert plan.shape == cost.shape and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(-1), torch.full((batch, n), 1 / n), atol=1e-3 / n, rtol=0)
    torch.testing.assert_close(plan.sum(-2), torch.full((batch, p), 1 / p), atol=1e-3 / p, rtol=0)


def test_sinkhorn_moves_mass_along_cheap_pairs() -> None:
    cost = (1 - torch.eye(8)).unsqueeze(0)
    plan = sinkhorn(cost, epsilon=0.05, iterations=50)
    torch.testing.assert_close(plan[0], torch.eye(8) / 8, atol=1e-4, rtol=0)


def test_straight_through_gradient_reaches_encoder() -> None:
    torch.manual_seed(0)
    network = L2GNet(num_classes=3, **SMALL).train()
    network(torch.randn(2, 1, 64, 64)).square().mean().backward()  # decoder output only, no VQ loss
    # The projection to the code space reaches the loss only through the quantiser.
    assert network.to_code.weight.grad.abs().sum() > 0
    assert network.globalizer.reference.grad.abs().sum() > 0
    assert all(stage[0].weight.grad.abs().sum() > 0 for stage in network.encoder)
    # The codebook itself learns from the VQ loss alone.
    assert network.quantizer.codebook.grad is None or not network.quantizer.codebook.grad.any()


def test_auxiliary_loss_trains_the_codebook_and_vanishes_in_eval() -> None:
    torch.manual_seed(0)
    network = L2GNet(num_classes=3, **SMALL).train()
    network(torch.randn(2, 1, 128, 128))  # more bottleneck vectors than codes, so not all are codes exactly
    loss = network.auxiliary_loss()
    assert loss.item() > 0
    loss.backward()
    assert network.quantizer.codebook.grad.any()
    network.eval()
    with torch.no_grad():
        network(torch.randn(1, 1, 64, 64))
    assert network.auxiliary_loss().item() == 0.0


def test_codebook_usage_is_reported_from_training_batches() -> None:
    torch.manual_seed(0)
    network = L2GNet(num_classes=3, **SMALL)
    assert network.codebook_usage()["used_fraction"] == 0.0  # nothing selected yet
    network.train()
    network(torch.randn(4, 1, 64, 64))
    usage = network.codebook_usage()
    assert usage["perplexity"] > 1
    assert 0 < usage["used_fraction"] <= 1
    network.eval()
    with torch.no_grad():
        network(torch.randn(4, 1, 64, 64))
    assert network.codebook_usage() == usage  # inference leaves the statistics alone


def test_dead_codes_are_reseeded_from_encoder_outputs_in_training() -> None:
    torch.manual_seed(0)
    quantizer = VectorQuantizer(num_codes=16, code_dim=4, commitment_beta=0.25, dead_after=2).train()
    quantizer(torch.randn(64, 4))  # the first training batch seeds every code
    assert quantizer.usage()["used_fraction"] == 1.0

    cluster = 5 + 0.01 * torch.randn(32, 4)  # far from every code: a single code ends up selected
    for _ in range(3):
        quantizer(cluster)
    assert quantizer.usage()["dead_codes"] == 15
    before = quantizer.codebook.detach().clone()

    quantizer.eval()
    quantizer(cluster)
    assert torch.equal(quantizer.codebook, before), "eval must not re-seed"

    quantizer.train()
    quantizer(cluster)  # the 4th forward after seeding: a re-seeding step
    changed = (quantizer.codebook != before).any(dim=1)
    assert changed.sum() == 15
    reseeded = quantizer.codebook[changed].detach()
    assert (reseeded[:, None, :] == cluster[None, :, :]).all(dim=-1).any(dim=1).all()
    assert quantizer.usage()["dead_codes"] < 15


def test_l2gnet_rejects_wrong_number_of_widths() -> None:
    with pytest.raises(ValueError):
        L2GNet(widths=[8, 16, 32])
