"""What runs a loaded network: plain PyTorch, or ONNX Runtime on the CPU where it is installed.

Both run the folded network (`SegmentationNetwork.folded_for_inference`), pad the batch once and compute the
network's grid inputs once per size. "auto" picks ONNX Runtime on the CPU when the `[onnx]` extra is installed
(1.5-2x faster here, see benchmarks/bench_inference.py) and PyTorch elsewhere; `RESEG_BACKEND` or `load_model`'s
`backend` forces one. The ONNX graph is exported on the first batch, in the process that runs the model (the
engine process under napari), and cached per weights hash (`reseg.inference.onnx_export`). When onnxruntime is
missing or the export fails, the run goes on in PyTorch and says so once in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from reseg.devices import BACKEND_CHOICES
from reseg.errors import ResegError
from reseg.models import SegmentationNetwork

if TYPE_CHECKING:
    import onnxruntime

BACKEND_ENV = "RESEG_BACKEND"
# Images per batch when the caller does not say. CPU: one (bench_inference.py, batch 1 vs 2 vs 4 per B-scan,
# both backends: larger batches only add memory traffic on a small cache); GPUs: four, halved on out-of-memory.
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 1, 4

log = logging.getLogger(__name__)


def batch_size_for(device: torch.device) -> int:
    """Images per batch on `device` when the caller does not say."""
    return CPU_BATCH_SIZE if device.type == "cpu" else GPU_BATCH_SIZE


class InferenceBackend(Protocol):
    """Logits (N, K, H, W) float of a float batch (N, C, H, W) on the model's device."""

    batch_size: int

    @property
    def name(self) -> str: ...

    def logits(self, batch: torch.Tensor) -> torch.Tensor: ...


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (bfloat16 where supported), full float32 elsewhere."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


class _GridInputs:
    """The network's grid inputs per padded size, computed once (LightReSeg's table: a bicubic resize)."""

    def __init__(self, network: SegmentationNetwork) -> None:
        self.network = network
        self._by_size: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def __call__(self, height: int, width: int) -> dict[str, torch.Tensor]:
        if (height, width) not in self._by_size:
            with torch.inference_mode():
                self._by_size[height, width] = self.network.grid_inputs(height, width)
        return self._by_size[height, width]


class TorchBackend:
    """The folded network in PyTorch, under autocast on CUDA."""

    name = "torch"

    def __init__(self, network: SegmentationNetwork, device: torch.device) -> None:
        self.network, self.device = network, device
        self.batch_size = batch_size_for(device)
        self.grid_inputs = _GridInputs(network)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        padded = self.network.pad_input(batch)
        grid = {k: v.to(batch.device) for k, v in self.grid_inputs(*padded.shape[-2:]).items()}
        with autocast(self.device):
            return self.network.forward_padded(padded, **grid)[..., :height, :width]


class OnnxBackend:
    """The folded network's ONNX graph in ONNX Runtime (CPU); PyTorch if the graph cannot be made.

    The folded PyTorch copy is made only when it is needed (to export the graph, or to run without one): with
    the graph in the cache the weights are held once by torch and once by ONNX Runtime, not three times."""

    def __init__(self, network: SegmentationNetwork, device: torch.device, graph: Callable[[], Path]) -> None:
        """`network`: the loaded one (padding and grid inputs come from it; folding changes neither). `graph`:
        the graph's cache file (hashing the weights, so only when the first batch comes)."""
        self.network, self.device, self._graph = network, device, graph
        self.batch_size = CPU_BATCH_SIZE
        self.grid_inputs = _GridInputs(network)
        self._session: onnxruntime.InferenceSession | None = None
        self._fallback: TorchBackend | None = None
        self._failed = False

    @property
    def name(self) -> str:
        return "torch" if self._failed else "onnx"

    @property
    def fallback(self) -> TorchBackend:
        """The folded network in PyTorch: what is exported, and what runs when ONNX Runtime cannot."""
        if self._fallback is None:
            self._fallback = TorchBackend(self.network.folded_for_inference(), self.device)
        return self._fallback

    def _prepared(self) -> onnxruntime.InferenceSession | None:
        from reseg.inference.onnx_export import ExportError, export_graph, open_session

        if self._session is None and not self._failed:
            path = self._graph()
            try:
                if not path.exists():
                    log.info("exporting the model to ONNX once: %s", path)
                    export_graph(self.fallback.network, path)
                    self._fallback = None  # exported: ONNX Runtime holds the weights from here on
                self._session = open_session(path)
            except Exception as error:  # ExportError, or onnxruntime refusing the file (it raises its own kinds)
                why = str(error) if isinstance(error, ExportError) else f"{type(error).__name__}: {error}"
                log.warning("ONNX Runtime cannot run this model (%s); inference runs in PyTorch", why)
                self._failed = True
        return self._session

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        session = self._prepared()
        if session is None:
            return self.fallback.logits(batch)
        height, width = batch.shape[-2:]
        padded = self.network.pad_input(batch)
        inputs = {"image": padded.contiguous().numpy()}
        inputs.update({k: v.numpy() for k, v in self.grid_inputs(*padded.shape[-2:]).items()})
        return torch.from_numpy(session.run(["logits"], inputs)[0])[..., :height, :width]


def _onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def requested_backend(backend: str | None) -> str:
    """The backend asked for: `backend`, else `RESEG_BACKEND`, else "auto"; ResegError for an unknown name."""
    name = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
    if name not in BACKEND_CHOICES:
        source = "backend" if backend else BACKEND_ENV
        raise ResegError(f"unknown {source} {name!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    return name


def choose_backend(
    network: SegmentationNetwork,
    device: torch.device,
    model_name: str,
    weights_sha256: Callable[[], str],
    backend: str | None = None,
) -> InferenceBackend:
    """The backend for `network` on `device`; its ONNX export is cached under the model's name and weights hash."""
    from reseg.inference.onnx_export import graph_path

    name = requested_backend(backend)
    if name != "torch":
        installed = _onnxruntime_installed()
        if name == "onnx" and device.type != "cpu":
            raise ResegError(f"the onnx backend runs on the CPU; device {device} needs the torch (or auto) backend")
        if name == "onnx" and not installed:
            raise ResegError("the onnx backend needs ONNX Runtime: pip install 'napari-reseg[onnx]'")
        if device.type == "cpu" and installed:
            return OnnxBackend(network, device, lambda: graph_path(network, model_name, weights_sha256()))
        if device.type == "cpu":
            log.info("onnxruntime is not installed (pip install 'napari-reseg[onnx]' is faster on the CPU): PyTorch")
    return TorchBackend(network.folded_for_inference(), device)
