"""Loading and saving model weights: a network built from its card, weights read without executing code
(safetensors, or ``torch.load(weights_only=True)`` for foreign ``.pt`` / ``.pth`` state dicts) and checked
against the card. Which models exist is `reseg.zoo.catalogue`'s job (no torch there).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from reseg.devices import resolve_device
from reseg.errors import CheckpointError
from reseg.inference.backends import InferenceBackend, choose_backend
from reseg.io._atomic import output_error, temporary_beside
from reseg.models import SegmentationNetwork, build_network, count_parameters
from reseg.zoo.cards import ModelCard, card_json, sha256_of
from reseg.zoo.catalogue import FOREIGN_SUFFIXES, resolve_card


@dataclass
class LoadedModel:
    """A network ready for inference, with the card that says how to feed it and where it came from."""

    network: SegmentationNetwork  # as trained: what fine-tuning starts from
    card: ModelCard
    device: torch.device
    weights_path: Path
    # What inference runs (folded, perhaps in ONNX Runtime); None runs `network` itself in PyTorch.
    backend: InferenceBackend | None = None


def _unwrap_state_dict(loaded: object, source: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or the common wrappers ({"state_dict": ...}, {"model": ...}, DDP prefixes)."""
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(source, "does not contain a state dict of tensors")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a foreign .pt/.pth file, never executing code from it."""
    if not path.exists():
        raise CheckpointError(path, "weights file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        if path.suffix in FOREIGN_SUFFIXES:
            with warnings.catch_warnings():  # the refusal below says what matters, once
                warnings.simplefilter("ignore")
                loaded = torch.load(path, map_location="cpu", weights_only=True)
            return _unwrap_state_dict(loaded, path)
    except pickle.UnpicklingError:  # torch's weights-only unpickler stopped
        called = _foreign_callables(path)
        if called:
            raise CheckpointError(
                path,
                f"is refused: loading it would execute code it names ({', '.join(called[:3])})"
                "; only plain tensors are loaded, e.g. from .safetensors",
            ) from None
        raise CheckpointError(
            path, "is corrupt or not a PyTorch weights file (it does not unpickle as plain tensors)"
        ) from None
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(path, f"is corrupt or not a weights file ({str(error).splitlines()[0]})") from None
    raise CheckpointError(path, f"unsupported weights format {path.suffix!r} (use .safetensors, .pt or .pth)")


def _foreign_callables(path: Path) -> list[str]:
    """What a pickled checkpoint would import and call on loading, beyond torch's own tensor rebuilding:
    read from its opcodes, never by unpickling."""
    try:
        if zipfile.is_zipfile(path):  # torch.save's format: the pickle is <archive>/data.pkl
            with zipfile.ZipFile(path) as archive:
                data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        else:
            data = path.read_bytes()
        names: list[str] = []
        texts: list[str] = []
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                names.append(str(argument).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(texts) >= 2:
                names.append(".".join(texts[-2:]))
            elif isinstance(argument, str):
                texts.append(argument)
    except (OSError, StopIteration, ValueError, zipfile.BadZipFile):
        return []
    return [name for name in dict.fromkeys(names) if not name.startswith(("torch.", "collections.OrderedDict"))]


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """NaN or infinite weights give a confident-looking nonsense result (one class everywhere): refuse them."""
    broken = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise CheckpointError(
            path,
            f"holds NaN or infinite weights in {len(broken)} tensor(s), e.g. {broken[0]}; "
            "the file is damaged or came from a diverged training",
        )


def _check_state_dict(
    network: SegmentationNetwork, state: dict[str, torch.Tensor], card: ModelCard, path: Path
) -> None:
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = "; ".join(
            part
            for part in (
                f"missing {len(missing)} key(s) e.g. {', '.join(missing[:3])}" if missing else "",
                f"unexpected {len(unexpected)} key(s) e.g. {', '.join(unexpected[:3])}" if unexpected else "",
            )
            if part
        )
        raise CheckpointError(path, f"does not match architecture {card.architecture!r}: {detail}")
    wrong = [
        (key, tuple(state[key].shape), tuple(value.shape))
        for key, value in expected.items()
        if state[key].shape != value.shape
    ]
    if wrong:
        head = [w for w in wrong if w[0].startswith("head.")]
        if head:
            raise CheckpointError(
                path, f"has {head[0][1][0]} output classes but its card {card.name!r} lists {card.num_classes}"
            )
        key, got, want = wrong[0]
        raise CheckpointError(path, f"tensor {key} has shape {got}, architecture expects {want}")


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "auto",
    card: ModelCard | str | Path | None = None,
    backend: str | None = None,
) -> LoadedModel:
    """Load a bundled/user model by name, or a checkpoint file, onto `device` in eval mode.

    `card` names the card to use for a checkpoint that has none beside it (a model name or a .json path).
    `backend` ("auto", "torch" or "onnx"; default `RESEG_BACKEND`, else "auto") is what runs inference, see
    `reseg.inference.backends`. Raises CheckpointError naming the file for a missing, corrupt or mismatching
    checkpoint.
    """
    model_card, weights_path = resolve_card(name_or_path, card)
    own_card = card is None  # a card borrowed from another model says nothing about these weights' hash
    verified = own_card and weights_path.suffix == ".safetensors" and bool(model_card.weights_sha256)
    if verified and model_card.weights_sha256 and weights_path.exists():
        actual = sha256_of(weights_path)
        if actual != model_card.weights_sha256:
            raise CheckpointError(
                weights_path,
                f"sha256 {actual[:12]}... differs from its card's {model_card.weights_sha256[:12]}... "
                "(the file is corrupt or was replaced)",
            )
    state = read_weights(weights_path)
    try:
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the caller's RNG alone
            network = build_network(model_card.architecture, model_card.arguments)
    except (TypeError, ValueError) as error:
        raise CheckpointError(weights_path, f"its card cannot build the network ({error})") from None
    _check_state_dict(network, state, model_card, weights_path)
    _check_finite(state, weights_path)
    network.load_state_dict(state)
    del state  # a copy of every weight: freed before the backend makes its own (peak memory, issue 15)
    target = resolve_device(device)
    # Faster convolutions on CPU and GPU. Module.to takes memory_format (documented); its type stubs do not.
    network.to(target, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    known_hash = model_card.weights_sha256 if verified else None
    chosen = choose_backend(network, target, model_card.name, lambda: known_hash or sha256_of(weights_path), backend)
    return LoadedModel(network, model_card, target, weights_path, chosen)


def save_model(network: SegmentationNetwork, card: ModelCard, folder: str | Path) -> Path:
    """Write `<folder>/<card.name>.safetensors` and its card (with parameter count and sha256) atomically.

    Both are written in full under temporary names before either replaces its target, so a kill or a full
    disk leaves the earlier pair (a full disk is an OutputError naming the file).
    """
    folder = Path(folder)
    weights = folder / f"{card.name}.safetensors"
    card_path = weights.with_suffix(".json")
    temporary_weights, temporary_card = temporary_beside(weights), temporary_beside(card_path)
    target = weights
    try:
        folder.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}
        temporary_weights.write_bytes(save(state))  # Python's I/O: a full disk is an OSError with its errno
        card.parameters = count_parameters(network)
        card.parts = network.parts()
        card.weights_sha256 = sha256_of(temporary_weights)
        target = card_path
        temporary_card.write_text(card_json(card), encoding="utf-8")
        os.replace(temporary_weights, weights)
        os.replace(temporary_card, card_path)
    except OSError as error:
        raise output_error(target, error) from error
    finally:
        temporary_weights.unlink(missing_ok=True)
        temporary_card.unlink(missing_ok=True)
    return weights
