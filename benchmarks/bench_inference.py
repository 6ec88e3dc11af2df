"""Inference speed of LightReSeg on 496 x 768 B-scans: today's eager path, the folded network in PyTorch and in
ONNX Runtime, side by side in one run, against this machine's own fp32 matmul rate measured in the same run.

For each path and batch size (1, 2, 4) it prints milliseconds per B-scan end to end through `segment`
(normalisation, network, softmax, the card's layer surfaces) and for the network alone, GFLOP per B-scan as the
path computes it (torch.utils.flop_counter, taught the CPU attention kernel it misses: 13.6 GFLOP of LightReSeg's
45), the achieved GFLOP/s and its fraction of the matmul rate. Paths are timed in turns within each repeat and
the median kept, so a machine shared with others slows them alike; the load is printed with the figures.

    python benchmarks/bench_inference.py [--repeats 3] [--batches 1 2 4] [--device cpu] [--threads 2]

"unfolded" is `segment` as it ran before the folds and backends (`LoadedModel` without a backend); "torch" and
"onnx" are `load_model(..., backend=...)`. On CUDA only the torch paths run, under autocast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from reseg.inference.segmentation import segment
from reseg.zoo.weights import LoadedModel, load_model

HEIGHT, WIDTH = 496, 768
SCAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "spectralis_vol" / "Willis_B_716_0.vol"
BSCANS = 4  # per timed `segment` call


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def load() -> str:
    try:
        return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Best-of fp32 matrix-multiply rate: the practical ceiling (roofline) for these networks."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """The CPU flash-attention kernel: the counter knows the CUDA kernels only."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def gflops_per_bscan(logits: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> float:
    attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={attention: _cpu_attention_flops})
    with torch.inference_mode(), counter:
        logits(torch.rand(1, 1, HEIGHT, WIDTH, device=device))
    return counter.get_total_flops() / 1e9


def bscans() -> tuple[np.ndarray, tuple[float, float] | None, str]:
    """The real Spectralis B-scan repeated, where ../shared has it; else a phantom's."""
    if SCAN.exists():
        from reseg.io import read_volume

        volume = read_volume(SCAN)
        return np.repeat(volume.data[:1], BSCANS, axis=0), volume.pixel_spacing, SCAN.name
    from reseg.data.phantom import make_oct_phantom

    phantom = make_oct_phantom(n_bscans=BSCANS, height=HEIGHT, width=WIDTH, seed=0)
    return phantom.image, phantom.spacing[1:], "phantom"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="lightreseg-oct")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    folded = load_model(args.model, device=device, backend="torch")
    paths: dict[str, LoadedModel] = {"unfolded": dataclasses.replace(folded, backend=None), "torch": folded}
    if device.type == "cpu":
        paths["onnx"] = load_model(args.model, device=device, backend="onnx")
    images, spacing, source = bscans()
    started = time.perf_counter()
    for model in paths.values():  # warm: the first call exports the ONNX graph when it is not cached
        segment(model, images[:1], batch_size=1, pixel_spacing=spacing)
    print(f"warm-up (ONNX export if not cached) {time.perf_counter() - started:.1f} s")

    def network(model: LoadedModel) -> Callable[[torch.Tensor], torch.Tensor]:
        return model.backend.logits if model.backend is not None else model.network

    gflop = {"unfolded": gflops_per_bscan(folded.network, device), "torch": gflops_per_bscan(network(folded), device)}
    gflop["onnx"] = gflop["torch"]  # the same folded graph
    inputs = {b: torch.rand(b, 1, HEIGHT, WIDTH, device=device) for b in args.batches}
    e2e: dict[tuple[str, int], list[float]] = {}
    net: dict[tuple[str, int], list[float]] = {}
    peaks = []
    for _ in range(args.repeats):  # in turns, so that another user's load slows every path alike
        peaks.append(matmul_gflops(device))
        for name, model in paths.items():
            for b in args.batches:
                tick = time.perf_counter()
                segment(model, images, batch_size=b, pixel_spacing=spacing)
                e2e.setdefault((name, b), []).append((time.perf_counter() - tick) / len(images))
                with torch.inference_mode():
                    tick = time.perf_counter()
                    for _ in range(BSCANS // b or 1):
                        network(model)(inputs[b])
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                net.setdefault((name, b), []).append((time.perf_counter() - tick) / max(BSCANS, b))
    peak = statistics.median(peaks)

    print(f"machine: {machine_name(device)}; {load()} (after the run)")
    print(f"input: {source}, {HEIGHT}x{WIDTH}, {len(images)} B-scans per segment call, median of {args.repeats}")
    print(
        f"fp32 matmul rate (2048^3, best of 5, median over repeats): {peak:.1f} GFLOP/s (range "
        f"{min(peaks):.0f}-{max(peaks):.0f})"
    )
    print(f"GFLOP per B-scan: unfolded {gflop['unfolded']:.1f}, folded {gflop['torch']:.1f}\n")
    print("| path | batch | ms / B-scan, segment | ms / B-scan, network | GFLOP/s (network) | fraction of matmul |")
    print("|---|---|---|---|---|---|")
    for name, b in e2e:
        whole, alone = statistics.median(e2e[name, b]) * 1e3, statistics.median(net[name, b]) * 1e3
        rate = gflop[name] / (alone / 1e3)
        print(f"| {name} | {b} | {whole:.0f} | {alone:.0f} | {rate:.1f} | {rate / peak:.2f} |")
    today = statistics.median(e2e["unfolded", 4]) if ("unfolded", 4) in e2e else None
    engine = "onnx" if "onnx" in paths else "torch"  # what load_model's "auto" gives
    backend = paths[engine].backend
    batch = backend.batch_size if backend is not None else 4
    if today is not None and (engine, batch) in e2e:
        mine = statistics.median(e2e[engine, batch])
        print(
            f"\nsegment as the engine picks ({engine}, batch {batch}): {mine * 1e3:.0f} ms per B-scan; "
            f"today's segment (unfolded, batch 4): {today * 1e3:.0f} ms; {today / mine:.2f}x faster"
        )


if __name__ == "__main__":
    main()
