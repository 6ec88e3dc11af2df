"""Run by test_distributed under torchrun: a few training steps, then each rank saves the weights it ends with."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from reseg.data.dataset import load_training_set
from reseg.train.loop import TrainingConfig, iter_train


def main(data: str, output: str, architecture: str) -> None:
    config = TrainingConfig(
        architecture=architecture, epochs=2, steps_per_epoch=3, batch_size=2, crop_size=(64, 64), device="cpu"
    )
    events = iter_train(load_training_set([data]), "ddp", Path(output) / "model", config)
    while True:
        try:
            next(events)
        except StopIteration as end:
            network = end.value
            break
    state = {key: value.detach().contiguous() for key, value in network.state_dict().items()}
    save_file(state, str(Path(output) / f"rank{os.environ['RANK']}.safetensors"))


if __name__ == "__main__":
    main(*sys.argv[1:])
