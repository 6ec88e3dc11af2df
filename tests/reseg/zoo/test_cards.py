"""Model cards are validated field by field when read: a damaged card names its file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reseg.errors import CheckpointError
from reseg.zoo.cards import read_card, write_card
from reseg.zoo.catalogue import bundled_model_dir


@pytest.fixture
def card_json() -> dict:
    return json.loads((bundled_model_dir() / "lightreseg-oct.json").read_text())


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("input_spacing[0]", lambda c: c.update(input_spacing=[0.0, 0.01])),
        ("input_spacing[0]", lambda c: c.update(input_spacing=[float("nan"), 0.01])),
        ("input_spacing[1]", lambda c: c.update(input_spacing=[0.01, 1e-4])),
        ("normalization.lower", lambda c: c["normalization"].update(lower=-5)),
        ("normalization.upper", lambda c: c["normalization"].update(upper=150)),
        ("normalization", lambda c: c["normalization"].update(lower=60, upper=40)),
        ("normalization", lambda c: c.update(normalization={"method": "window", "low": 40, "high": 40})),
        ("normalization.method", lambda c: c.update(normalization={"method": "zscore"})),
        ("arguments.num_classes", lambda c: c["arguments"].update(num_classes=-3)),
        ("arguments.num_codes", lambda c: c["arguments"].update(num_codes=2_000_000_000)),
        ("arguments.widths[1]", lambda c: c["arguments"].update(widths=[8, -16, 32, 64])),
        ("classes", lambda c: c.update(classes="vitreous")),
        ("classes[0].color", lambda c: c["classes"][0].update(color="red")),
        ("classes", lambda c: c["classes"][1].update(index=0)),
        ("name", lambda c: c.update(name="../../evil")),
    ],
)
def test_a_damaged_card_names_its_file_and_the_field(tmp_path: Path, card_json, field, edit):
    edit(card_json)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(card_json))
    with pytest.raises(CheckpointError) as refused:
        read_card(path)
    assert str(refused.value).startswith(f"{path}: model card field '{field}' "), str(refused.value)


def test_the_bundled_cards_are_valid_and_survive_a_round_trip(tmp_path: Path):
    for path in bundled_model_dir().glob("*.json"):
        card = read_card(path)
        write_card(card, tmp_path / path.name)
        assert read_card(tmp_path / path.name) == card
    # written atomically: nothing but the cards is left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in bundled_model_dir().glob("*.json"))
