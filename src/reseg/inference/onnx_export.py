"""A folded network exported to ONNX once per weights, and kept in the user cache for ONNX Runtime.

The graph takes a padded (N, C, H, W) image with N, H and W free, plus the network's grid inputs (LightReSeg's
positional table, whose antialiased bicubic resize ONNX lacks, is computed per size by the caller). Its file name
carries a key of everything the graph depends on: the weights' sha256, the source of the network's code, and the
torch and opset versions, so an upgrade or a code change exports again instead of running a stale graph.
Before a graph is kept it is run at a second size and compared with the network it came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import platformdirs
import torch
from torch import nn
from torch._C import Value

from reseg.io._atomic import replace_atomically
from reseg.models import SegmentationNetwork

if TYPE_CHECKING:
    import onnxruntime

CACHE_DIR_ENV = "RESEG_CACHE_DIR"
OPSET = 17
IMAGE, LOGITS = "image", "logits"
_EXPORT_SIZE, _CHECK_SIZE = (1, 96, 128), (2, 80, 112)  # (N, H, W) traced, and checked after tracing
_CHECK_TOLERANCE = 1e-3  # max |logit difference| the kept graph may have against the network


class ExportError(RuntimeError):
    """The graph could not be made, or does not compute what the network computes."""


def cache_dir() -> Path:
    """Where exported graphs live; `RESEG_CACHE_DIR` overrides the platform's user cache folder."""
    override = os.environ.get(CACHE_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("napari-reseg"))


def graph_path(network: SegmentationNetwork, name: str, weights_sha256: str) -> Path:
    """The cache file of `network` (folded) with these weights."""
    digest = hashlib.sha256(weights_sha256.encode())
    for cls in type(network).__mro__:
        module = sys.modules.get(cls.__module__)
        if module is not None and cls.__module__.startswith("reseg."):
            digest.update(inspect.getsource(module).encode())
    digest.update(inspect.getsource(sys.modules[__name__]).encode())
    digest.update(f"{torch.__version__} opset {OPSET}".encode())
    return cache_dir() / "onnx" / f"{name}-{digest.hexdigest()[:20]}.onnx"


class _Graph(nn.Module):
    """forward_padded with the grid inputs as positional arguments, as the exporter wants them."""

    def __init__(self, network: SegmentationNetwork, names: list[str]) -> None:
        super().__init__()
        self.network, self.names = network, names

    def forward(self, image: torch.Tensor, *grid: torch.Tensor) -> torch.Tensor:
        return self.network.forward_padded(image, **dict(zip(self.names, grid, strict=True)))


def _sample(network: SegmentationNetwork, size: tuple[int, int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A smooth, scan-like image in [0, 1] (noise would make the channel attention's softmax ill-conditioned)
    and the grid inputs of its size."""
    n, height, width = size
    y, x = torch.meshgrid(torch.linspace(0, 3, height), torch.linspace(0, 5, width), indexing="ij")
    image = (0.5 + 0.4 * torch.sin(y * 2.1 + x) * torch.cos(x * 0.7 - y)).expand(n, network.in_channels, -1, -1)
    return image.contiguous(), network.grid_inputs(height, width)


def _free_axes(network: SegmentationNetwork) -> dict[str, dict[int, str]]:
    """The axes of each graph input and of the logits that change with the image's size."""
    axes = {IMAGE: {0: "batch", 2: "height", 3: "width"}, LOGITS: {0: "batch", 2: "height", 3: "width"}}
    one, other = network.grid_inputs(*_EXPORT_SIZE[1:]), network.grid_inputs(*_CHECK_SIZE[1:])
    for name, tensor in one.items():
        changing = [axis for axis, (a, b) in enumerate(zip(tensor.shape, other[name].shape, strict=True)) if a != b]
        axes[name] = {axis: f"{name}_{axis}" for axis in changing}
    return axes


_ATTENTION = "aten::scaled_dot_product_attention"


def _multi_head_attention(
    g: Any,  # the exporter's graph context
    heads: int,
    query: Value,
    key: Value,
    value: Value,
    attn_mask: Value,
    dropout_p: float,
    is_causal: bool,
    scale: Value,
    gqa: bool,
) -> Value:
    """Plain self-attention (B, heads, S, d) as ONNX Runtime's fused MultiHeadAttention: one kernel that never
    writes the (S x S) probabilities of every head out and reads them back. Masked, causal, scaled or grouped
    attention keeps the standard decomposition."""
    from torch.onnx import symbolic_helper, symbolic_opset14

    plain = symbolic_helper._is_none(attn_mask) and symbolic_helper._is_none(scale)
    if not (plain and dropout_p == 0.0 and not is_causal and not gqa):
        return symbolic_opset14.scaled_dot_product_attention(
            g, query, key, value, attn_mask, dropout_p, is_causal, scale, gqa
        )
    flat = g.op("Constant", value_t=torch.tensor([0, 0, -1]))
    query, key, value = (g.op("Reshape", g.op("Transpose", x, perm_i=[0, 2, 1, 3]), flat) for x in (query, key, value))
    out = g.op("com.microsoft::MultiHeadAttention", query, key, value, num_heads_i=heads)  # (B, S, heads * d)
    split = g.op("Constant", value_t=torch.tensor([0, 0, heads, -1]))
    return g.op("Transpose", g.op("Reshape", out, split), perm_i=[0, 2, 1, 3])  # back to (B, heads, S, d)


def _register_fused_attention(heads: int) -> bool:
    """Teach the exporter `_multi_head_attention` for `heads`; False for an exporter without these hooks."""
    try:
        from torch.onnx import symbolic_helper

        @symbolic_helper.parse_args("v", "v", "v", "v", "f", "b", "v", "b")
        def symbolic(g, query, key, value, attn_mask, dropout_p, is_causal, scale, gqa):
            return _multi_head_attention(g, heads, query, key, value, attn_mask, dropout_p, is_causal, scale, gqa)

        torch.onnx.register_custom_op_symbolic(_ATTENTION, symbolic, OPSET)
    except (ImportError, AttributeError):
        return False
    return True


@contextlib.contextmanager
def _fused_attention(heads: int | None) -> Iterator[None]:
    """While exporting: `scaled_dot_product_attention` becomes ONNX Runtime's MultiHeadAttention (a sixth less
    of LightReSeg's attention time on 1489 tokens here). `heads`: the network's (`attention_heads`), which the
    fused operator needs as a constant; the exporter loses the shapes after a custom op, so it cannot tell.
    Without them, or with an exporter that lacks the hooks, attention keeps the standard decomposition."""
    registered = heads is not None and _register_fused_attention(heads)
    try:
        yield
    finally:
        if registered:
            torch.onnx.unregister_custom_op_symbolic(_ATTENTION, OPSET)


def export_graph(network: SegmentationNetwork, target: Path) -> None:
    """Export `network` (folded, eval) to `target` atomically; ExportError if it fails or differs."""
    image, grid = _sample(network, _EXPORT_SIZE)
    names = list(grid)

    def write(path: Path) -> None:
        with warnings.catch_warnings(), _fused_attention(network.attention_heads):
            warnings.simplefilter("ignore")  # the exporter's notes on tracing are for its developers
            torch.onnx.export(
                _Graph(network, names).eval(),  # a module starts in training mode, which the exporter restores
                (image, *grid.values()),
                str(path),
                dynamo=False,
                input_names=[IMAGE, *names],
                output_names=[LOGITS],
                dynamic_axes=_free_axes(network),
                opset_version=OPSET,
                custom_opsets={"com.microsoft": 1} if network.attention_heads else None,
            )
        _check(network, path)

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        replace_atomically(target, write)
    except ExportError:
        raise
    except Exception as error:  # the exporter raises many kinds (unsupported operator, tracing, I/O)
        raise ExportError(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error


def open_session(path: Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on the CPU with as many threads as torch uses (the user's setting)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its notes on graph rewrites are for its developers
    # The attention's softmax has many denormal probabilities, which x86 multiplies ~100x slower: as zero they
    # change no logit by more than ~1e-38, and LightReSeg's attention runs 5x faster (bench_inference.py).
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    # Threads that sleep between runs instead of spinning leave the cores to the softmax and layer surfaces
    # that follow each batch in PyTorch (and to napari): `segment` 3-4 % faster here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check(network: SegmentationNetwork, path: Path) -> None:
    """Run the graph at a size other than the traced one: a size baked into it shows up here."""
    image, grid = _sample(network, _CHECK_SIZE)
    with torch.inference_mode():
        expected = network.forward_padded(image, **grid).numpy()
    inputs = {IMAGE: image.numpy(), **{name: value.numpy() for name, value in grid.items()}}
    got = open_session(path).run([LOGITS], inputs)[0]
    difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not difference <= _CHECK_TOLERANCE:
        raise ExportError(f"the exported graph differs from the network by {difference:.3g} at another size")
