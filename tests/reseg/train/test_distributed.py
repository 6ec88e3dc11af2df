"""`reseg train` under torchrun: two CPU processes (gloo) must end with the same weights; only rank 0 writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reseg.cli import main
from reseg.zoo.weights import load_model

WORKER = Path(__file__).with_name("ddp_worker.py")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("architecture", ["lightreseg", "l2gnet"])
def test_two_processes_end_with_identical_weights(tmp_path, architecture):
    data = tmp_path / "data"
    assert main(["phantom", str(data), "--volumes", "3", "--bscans", "2", "--height", "224", "--width", "96"]) == 0
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            str(WORKER),
            str(data),
            str(tmp_path),
            architecture,
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rank0, rank1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)
    initial = load_model(tmp_path / "model" / "ddp.json", device="cpu")  # written by rank 0 only, once
    assert initial.card.training["processes"] == 2
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["ddp.json", "ddp.safetensors"]
