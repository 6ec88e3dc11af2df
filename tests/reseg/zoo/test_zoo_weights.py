"""The model zoo: bundled cards are complete and honest, and bad checkpoints fail with clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from reseg.errors import CheckpointError
from reseg.models import build_network, count_parameters
from reseg.zoo.cards import read_card, sha256_of
from reseg.zoo.catalogue import bundled_model_dir, list_models
from reseg.zoo.weights import load_model, save_model

BUNDLED = ("lightreseg-oct", "l2gnet-ct")


def test_bundled_models_are_listed_with_complete_cards():
    cards = {card.name: card for card in list_models()}
    assert set(BUNDLED) <= set(cards)
    for name in BUNDLED:
        card = cards[name]
        weights = bundled_model_dir() / f"{name}.safetensors"
        assert card.weights_sha256 == sha256_of(weights)
        network = build_network(card.architecture, card.arguments)
        assert card.parameters == count_parameters(network)
        assert card.parts == network.parts()  # listed for user interfaces that do not load torch
        assert card.training["data"] and card.terms and card.normalization["method"]
        assert 0 < card.metrics["validation"]["mean_dice"] <= 1
        assert all(len(c.color) == 3 for c in card.classes)
    assert cards["lightreseg-oct"].num_classes == 10 and cards["lightreseg-oct"].modality == "OCT"
    assert cards["l2gnet-ct"].num_classes == 9 and cards["l2gnet-ct"].modality == "CT"
    assert "demonstration" in cards["l2gnet-ct"].terms.lower()


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_loads_in_eval_mode_on_cpu(name):
    model = load_model(name, device="cpu")
    assert not model.network.training
    assert model.device.type == "cpu"
    with torch.inference_mode():
        logits = model.network(torch.zeros(1, 1, 37, 53))
    assert logits.shape == (1, model.card.num_classes, 37, 53)


def test_loading_a_model_leaves_the_callers_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_model("lightreseg-oct", device="cpu")
    assert torch.equal(torch.rand(3), expected)


def _user_checkpoint(folder, num_classes=3):
    """A freshly saved tiny-class LightReSeg with its card, as a user's training run would leave it."""
    card = read_card(bundled_model_dir() / "lightreseg-oct.json")
    card.name, card.classes = "mine", card.classes[:num_classes]
    card.arguments = {**card.arguments, "num_classes": num_classes}
    card.postprocessing = []  # written for the 10 OCT classes
    network = build_network(card.architecture, card.arguments)
    return save_model(network, card, folder), network


def test_user_model_appears_in_catalogue_and_loads_by_name(user_models):
    _weights, network = _user_checkpoint(user_models)
    assert "mine" in {card.name for card in list_models()}
    loaded = load_model("mine", device="cpu")
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value)


def test_foreign_pth_state_dict_loads_with_a_named_card(tmp_path):
    reference = load_model("lightreseg-oct", device="cpu")
    path = tmp_path / "from_elsewhere.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.network.state_dict().items()}}, path)
    loaded = load_model(path, device="cpu", card="lightreseg-oct")
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded.network(x), reference.network(x))


def test_checkpoint_without_card_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "orphan.pth"
    torch.save(load_model("lightreseg-oct", device="cpu").network.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"orphan\.pth.*no model card.*--card"):
        load_model(path)


def test_wrong_class_count_is_reported(tmp_path):
    weights, _ = _user_checkpoint(tmp_path, num_classes=3)
    with pytest.raises(
        CheckpointError, match=r"mine\.safetensors: has 3 output classes but its card 'lightreseg-oct' lists 10"
    ):
        load_model(weights, card="lightreseg-oct")


def test_wrong_architecture_keys_are_reported(tmp_path):
    path = tmp_path / "ct_weights.pth"
    torch.save(load_model("l2gnet-ct", device="cpu").network.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"ct_weights\.pth: does not match architecture 'lightreseg': missing"):
        load_model(path, card="lightreseg-oct")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_weights_are_reported(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00not weights at all" * 10)
    with pytest.raises(CheckpointError, match=rf"broken\{suffix}: (is corrupt|cannot be loaded)"):
        load_model(path, card="lightreseg-oct")


def test_pickled_code_is_never_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(CheckpointError) as refused:
        load_model(path, card="lightreseg-oct")
    message = str(refused.value)
    assert message.startswith(f"{path}: is refused: loading it would execute code it names (")
    assert "print" in message and "\n" not in message and "weights_only" not in message


def test_nan_weights_are_refused_at_load(tmp_path):
    state = load_model("lightreseg-oct", device="cpu").network.state_dict()
    save_file(
        {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v).contiguous() for k, v in state.items()},
        str(tmp_path / "nan.safetensors"),
    )
    with pytest.raises(CheckpointError, match=r"nan\.safetensors: holds NaN or infinite weights"):
        load_model(tmp_path / "nan.safetensors", card="lightreseg-oct")


def test_replaced_weights_fail_the_sha256_check(tmp_path):
    for suffix in (".json", ".safetensors"):
        shutil.copy(bundled_model_dir() / f"lightreseg-oct{suffix}", tmp_path / f"copy{suffix}")
    state = load_model("lightreseg-oct", device="cpu").network.state_dict()
    save_file(
        {k: (v + 0.01 if v.is_floating_point() else v).contiguous() for k, v in state.items()},
        str(tmp_path / "copy.safetensors"),
    )
    with pytest.raises(CheckpointError, match=r"copy\.safetensors: sha256 .* differs from its card"):
        load_model(tmp_path / "copy.json")


def test_card_with_inconsistent_class_count_is_rejected(tmp_path):
    data = json.loads((bundled_model_dir() / "lightreseg-oct.json").read_text())
    data["arguments"]["num_classes"] = 4
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError, match=r"bad\.json: model card lists 10 classes but its arguments say num_classes=4"
    ):
        read_card(path)


def test_card_with_unknown_postprocessing_is_rejected(tmp_path):
    data = json.loads((bundled_model_dir() / "lightreseg-oct.json").read_text())
    data["postprocessing"] = ["confine_to_retina", "smooth-everything"]
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError,
        match=r"odd\.json: names unknown post-processing 'smooth-everything'; known: "
        r"layer_surfaces, confine_to_retina",
    ):
        read_card(path)
    data["postprocessing"] = ["confine_to_retina"]
    data["classes"], data["arguments"]["num_classes"] = data["classes"][:3], 3
    path.write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError,
        match=r"odd\.json: post-processing 'confine_to_retina' works on the classes "
        r"vitreous, RNFL, .* not on this card's vitreous, RNFL, GCL\+IPL",
    ):
        read_card(path)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(CheckpointError, match=r"no-such-model: no such model or file \(known models: .*lightreseg-oct"):
        load_model("no-such-model")
