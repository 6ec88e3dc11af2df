"""Training throughput (B-scans per second) of both architectures, as `reseg train` runs them.

One step is the engine's own `reseg.train.loop.train_step` (forward, Dice + cross-entropy + L2GNet's VQ loss,
backward, AdamW update) on a batch of random crops, in channels-last memory format. Prints the median over
the timed steps, after warm-up steps.

    python benchmarks/bench_train.py [--device cpu|cuda] [--batch 6] [--crop 320 320] [--steps 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from reseg.models import build_network, count_parameters
from reseg.train.loop import train_step
from reseg.train.losses import DiceCrossEntropyLoss

ARCHITECTURES = {"lightreseg": 10, "l2gnet": 9}


def step_seconds(
    architecture: str,
    classes: int,
    device: torch.device,
    batch: int,
    crop: tuple[int, int],
    steps: int,
    warmup: int = 2,
) -> tuple[float, int]:
    """Median seconds per training step, and the network's parameter count."""
    network = build_network(architecture, {"num_classes": classes}).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    loss_function = DiceCrossEntropyLoss()
    images = torch.rand(batch, 1, *crop, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, classes, (batch, *crop), device=device)
    times = []
    for index in range(warmup + steps):
        started = time.perf_counter()
        train_step(network, network, loss_function, optimizer, images, labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times), count_parameters(network)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--crop", type=int, nargs=2, default=(320, 320))
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"device: {device} ({name}), {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"batch {args.batch} crops of {args.crop[0]}x{args.crop[1]}, median of {args.steps} steps\n")
    print("| architecture | parameters | s / step | B-scan crops / s |")
    print("|---|---|---|---|")
    for architecture, classes in ARCHITECTURES.items():
        seconds, parameters = step_seconds(architecture, classes, device, args.batch, tuple(args.crop), args.steps)
        print(f"| {architecture} | {parameters / 1e6:.2f} M | {seconds:.2f} | {args.batch / seconds:.2f} |")


if __name__ == "__main__":
    main()
