"""Inference speed of the bundled models on the CPU, against this machine's own fp32 matmul rate.

Prints, for each model on a batch of 496x768 B-scans: milliseconds per B-scan, GFLOPs per B-scan (counted by
torch.utils.flop_counter), the achieved GFLOP/s, and that rate as a fraction of the fp32 matmul rate measured
in the same run, so the figures compare across machines.

    python benchmarks/bench_inference.py [--batch 4] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from reseg.inference.segmentation import segment
from reseg.zoo.weights import load_model

HEIGHT, WIDTH = 496, 768


def machine_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Best-of fp32 matrix-multiply rate: the practical ceiling for convolution-heavy networks."""
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


def flops_per_bscan(network: torch.nn.Module, device: torch.device) -> float:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.zeros(1, 1, HEIGHT, WIDTH, device=device))
    return counter.get_total_flops()


def ms_per_bscan(model, batch: int, repeats: int) -> float:
    """Median wall time of the whole engine path (normalisation, forward, softmax, argmax) per B-scan."""
    bscans = torch.randint(0, 255, (batch, HEIGHT, WIDTH), dtype=torch.uint8).numpy()
    segment(model, bscans[:1], batch_size=1)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        segment(model, bscans, batch_size=batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / batch * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["lightreseg-oct", "l2gnet-ct"])
    args = parser.parse_args()

    device = torch.device(args.device)
    peak = matmul_gflops(device)
    print(f"machine: {machine_name()}")
    print(f"fp32 matmul rate (2048^3, best of 10): {peak:.1f} GFLOP/s")
    print(f"input: batch of {args.batch} B-scans of {HEIGHT}x{WIDTH}, median of {args.repeats} runs\n")
    header = "| model | parameters | GFLOPs / B-scan | ms / B-scan | GFLOP/s | fraction of matmul rate |"
    print(header)
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model = load_model(name, device=device)
        model.card.input_spacing = None  # time the network at the B-scan size, not resampled
        gflops = flops_per_bscan(model.network, device) / 1e9
        ms = ms_per_bscan(model, args.batch, args.repeats)
        rate = gflops / (ms / 1e3)
        params = sum(p.numel() for p in model.network.parameters()) / 1e6
        print(
            f"| {name} ({model.card.architecture}) | {params:.2f} M | {gflops:.1f} | {ms:.0f} | {rate:.1f} | "
            f"{rate / peak:.2f} |"
        )


if __name__ == "__main__":
    main()
