"""The deep-learning half of the engine in a process of its own, so that torch never loads into napari.

Importing torch takes seconds, and even from a worker thread it freezes napari's event loop for 0.1-0.3 s at a
time (the dynamic loader maps and initialises its libraries, and its extension modules initialise holding
Python's GIL); training and inference also compete with the interface for the GIL between operations. A
separate process has neither problem: napari only waits on a pipe, off the GUI thread.

`EngineProcess` is the napari side: it starts the process (a new Python that imports no napari or Qt),
sends one command at a time and streams the command's messages back. `serve` is the process's side. The
commands are the functions in `COMMANDS`: generators whose yields travel back; between yields they stop when
asked (after the batch or training step in progress). This module imports neither napari nor Qt, so that the
process stays lean.
"""

from __future__ import annotations

import itertools
import os
import pickle
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from typing import TYPE_CHECKING, Any

import numpy as np

from reseg.errors import ResegError

if TYPE_CHECKING:
    from reseg.zoo.weights import LoadedModel


class EngineStopped(ResegError):
    """The engine process ended while a command ran (killed, out of memory, crashed)."""


@dataclass(frozen=True)
class Batch:
    """One batch of a segmentation: its slices' labels (and confidence), and how far the run is."""

    done: int
    device: str
    batch_size: int
    slices: tuple[int, ...]
    labels: np.ndarray  # uint8 (len(slices), H, W)
    confidence: np.ndarray | None  # float32 (len(slices), H, W)
    slice_confidence: np.ndarray  # float32 (len(slices),)


@dataclass(frozen=True)
class TrainingStep:
    epoch: int
    step: int
    steps: int
    loss: float


@dataclass(frozen=True)
class TrainingEpoch:
    epoch: int
    epochs: int
    train_loss: float
    mean_dice: float  # on the held-out scans
    seconds: float


@dataclass(frozen=True)
class TrainingResult:
    """A fine-tuned model staged for keeping, and the base and new model's Dice on the held-out scans. Plain
    data: the engine's own result types would pull torch into napari when unpickled."""

    card_path: str
    name: str
    base_name: str
    rows: list[tuple[str, float, float]]  # (class, base Dice, new Dice)
    base_mean_dice: float
    new_mean_dice: float
    held_out_scans: list[str]

    @property
    def mean_dice_change(self) -> float:
        return self.new_mean_dice - self.base_mean_dice


class EngineProcess:
    """The napari side of one engine process. `start` and `stop` may be called from any thread; `wait_ready`
    and `run` block and belong in a worker thread, one at a time.

    The process is a new Python (`python -m napari_reseg._engine_process`), not a multiprocessing child: those
    re-run the main script of the process that starts them, and a user's script that opens napari would run
    again. It listens on a local socket, tells its address on stdout and takes two connections, for commands
    and for stop requests, authenticated by a key napari hands it on stdin.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._authkey = b""
        self._commands: Connection | None = None  # commands out, their messages back
        self._control: Connection | None = None  # stop requests
        self._ids = itertools.count(1)
        self.devices: list[str] | None = None  # what the process found (CUDA > MPS > CPU), once it is ready
        self.closing = False
        self._reading = threading.RLock()  # one reader of the process at a time (waiting for "ready", a run)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process if it is not running (cheap: it loads torch on its own)."""
        if self.alive:
            return
        self._authkey = secrets.token_bytes(32)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        stdin = self._process.stdin
        assert stdin is not None  # stdin=PIPE
        stdin.write(self._authkey.hex().encode() + b"\n")
        stdin.close()
        self._commands = self._control = None
        self.devices, self.closing = None, False

    def wait_ready(self) -> list[str]:
        """Block until the process has loaded torch; returns its devices, best first (call from a worker)."""
        with self._reading:
            self.start()
            if self._commands is None:
                assert self._process is not None and self._process.stdout is not None  # started, stdout=PIPE
                address = self._process.stdout.readline().decode().strip()
                if not address:
                    raise self._stopped()
                self._commands = Client(address, authkey=self._authkey)
                self._control = Client(address, authkey=self._authkey)
            if self.devices is None:
                kind, _, value = self._receive()
                if kind != "ready":
                    raise EngineStopped(f"the engine process did not start: {value}")
                self.devices = value
            return self.devices

    def run(self, command: str, **arguments: Any) -> Iterator[Any]:
        """Run a command in the process and yield what it yields; its exceptions are raised here."""
        with self._reading:
            self.wait_ready()
            run_id = next(self._ids)
            try:
                self._connection().send((run_id, command, arguments))
            except OSError as error:  # the process died, or `close` closed the connection as we sent
                raise self._stopped() from error
            while True:
                kind, message_id, value = self._receive()
                if message_id != run_id:
                    continue  # left over from a run whose reader went away
                if kind == "yield":
                    yield value
                elif kind == "done":
                    return
                else:
                    raise value

    def stop(self) -> None:
        """Ask the running command to stop after its current batch or step."""
        if self._control is not None:
            try:
                self._control.send("stop")
            except OSError:
                pass  # the process is gone: nothing runs

    def close(self) -> None:
        """End the process (any command in it is abandoned: its results are not wanted any more)."""
        self.closing = True
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        for connection in (self._commands, self._control):
            if connection is not None:
                connection.close()
        self._commands = self._control = None

    def _connection(self) -> Connection:
        """The commands connection, or EngineStopped if `close` (on the GUI thread) has dropped it meanwhile."""
        commands = self._commands
        if commands is None:
            raise self._stopped()
        return commands

    def _receive(self) -> tuple[str, int, Any]:
        commands = self._connection()
        try:
            return commands.recv()
        except (EOFError, OSError) as error:
            raise self._stopped() from error

    def _stopped(self) -> EngineStopped:
        if self.closing:
            return EngineStopped("the engine process was closed")
        code = self._process.wait() if self._process is not None else None
        return EngineStopped(
            f"the engine process stopped unexpectedly (exit code {code}; its messages are in "
            "napari's terminal); it is started again for the next run"
        )


# --- the engine process's side -------------------------------------------------------------------------------


class _Models:
    """The last model loaded, reused while the weights and device stay the same (loading costs ~0.5 s)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._model: LoadedModel | None = None

    def get(self, model_ref: str, weights_sha256: str | None, device: str) -> LoadedModel:
        from reseg.zoo.weights import load_model

        key = (model_ref, weights_sha256, device)
        if key != self._key:
            self._model, self._key = None, None  # free the old network before the new one is built
            self._model, self._key = load_model(model_ref, device=device), key
        assert self._model is not None  # loaded together with `_key`, which `key` matches
        return self._model


def _segment(
    stop: Callable[[], bool],
    models: _Models,
    model_ref: str,
    weights_sha256: str | None,
    device: str,
    image: np.ndarray,
    slices: list[int],
    batch_size: int | None,
    pixel_spacing: tuple[float, float] | None,
    raw: bool,
    with_confidence: bool,
    voxel_spacing: tuple[float, float, float] | None = None,
) -> Iterator[Any]:
    """Segment `slices` of `image` ((Z, H, W)); yields the device name, then one `Batch` per batch. The first
    batch is the first slice alone: napari shows it (the one on screen) while the rest are computed."""
    from reseg.inference.segmentation import iter_segment

    model = models.get(model_ref, weights_sha256, device)
    device_name = str(model.device)
    yield device_name
    labels = np.zeros(image.shape, np.uint8)
    confidence = np.zeros(image.shape, np.float32) if with_confidence else None
    slice_confidence = np.full(len(image), np.nan, np.float32)
    for progress in iter_segment(
        model,
        image,
        labels,
        confidence_out=confidence,
        slice_confidence_out=slice_confidence,
        batch_size=batch_size,
        slices=slices,
        pixel_spacing=pixel_spacing,
        raw=raw,
        voxel_spacing=voxel_spacing,
        first_batch_size=1,
    ):
        chunk = list(progress.slices)
        yield Batch(
            progress.done,
            device_name,
            progress.batch_size,
            progress.slices,
            labels[chunk],
            None if confidence is None else confidence[chunk],
            slice_confidence[chunk],
        )
        if stop():
            return


def _probabilities(
    stop: Callable[[], bool],
    models: _Models,
    model_ref: str,
    weights_sha256: str | None,
    device: str,
    image: np.ndarray,
    pixel_spacing: tuple[float, float] | None,
) -> Iterator[Any]:
    """The model's class probabilities of one (H, W) slice, as float16 (C, H, W): half the pipe's load, and
    more precision than a path search on them needs."""
    from reseg.inference.segmentation import slice_probabilities

    model = models.get(model_ref, weights_sha256, device)
    yield slice_probabilities(model, image, pixel_spacing)[0].astype(np.float16)


def _finetune(
    stop: Callable[[], bool],
    models: _Models,
    base: str,
    folders: list[str],
    name: str,
    staging: str,
    settings: dict,
    held_out: float,
) -> Iterator[Any]:
    """Fine-tune `base` on export folders; yields a `TrainingStep` per step, a `TrainingEpoch` per epoch, then
    the `TrainingResult`."""
    from reseg.train.finetune import FinetuneResult, iter_finetune
    from reseg.train.loop import EpochReport, StepReport, TrainingConfig

    for event in iter_finetune(base, folders, name, staging, TrainingConfig(**settings), held_out_fraction=held_out):
        if isinstance(event, StepReport):
            yield TrainingStep(event.epoch, event.step, event.steps, event.loss)
        elif isinstance(event, EpochReport):
            yield TrainingEpoch(
                event.epoch, event.epochs, event.train_loss, event.validation["mean_dice"], event.seconds
            )
        elif isinstance(event, FinetuneResult):
            comparison = event.comparison
            yield TrainingResult(
                str(event.weights.with_suffix(".json")),
                event.card.name,
                comparison.base_name,
                [(n, float(old), float(new)) for n, old, new in comparison.rows()],
                comparison.base.summary["mean_dice"],
                comparison.new.summary["mean_dice"],
                list(comparison.held_out_scans),
            )
        if stop():
            return


def _parts(stop: Callable[[], bool], models: _Models, model: str) -> Iterator[dict[str, int]]:
    """The freezable parts of a model whose card does not list them (cards older than `ModelCard.parts`)."""
    from reseg.models import build_network
    from reseg.zoo.catalogue import resolve_card

    card = resolve_card(model)[0]
    yield build_network(card.architecture, card.arguments).parts()


COMMANDS: dict[str, Callable[..., Iterator[Any]]] = {
    "segment": _segment,
    "probabilities": _probabilities,
    "finetune": _finetune,
    "parts": _parts,
}


def _sendable(error: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError naming its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def serve(commands: Connection, control: Connection) -> None:
    """The engine process: load torch, report the devices, then run commands until napari goes away."""
    from reseg.devices import available_devices

    def stop_requested() -> bool:
        requested = False
        while control.poll():
            requested = control.recv() == "stop" or requested
        return requested

    commands.send(("ready", 0, available_devices()))
    models = _Models()
    while True:
        try:
            run_id, command, arguments = commands.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        stop_requested()  # a request that came after the previous command had ended
        try:
            for item in COMMANDS[command](stop_requested, models, **arguments):
                commands.send(("yield", run_id, item))
            commands.send(("done", run_id, None))
        except (EOFError, OSError):
            return
        except Exception as error:
            commands.send(("error", run_id, _sendable(error)))


def main() -> None:
    """`python -m napari_reseg._engine_process`: listen, tell napari where (stdout), serve its two connections."""
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    with Listener(authkey=authkey) as listener:
        print(listener.address, flush=True)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what libraries print goes to napari's terminal
        commands = listener.accept()
        control = listener.accept()
    serve(commands, control)


if __name__ == "__main__":
    # Serve from the module under its import name: what it sends must unpickle in napari as this module's
    # classes, not as those of `__main__`.
    from napari_reseg._engine_process import main as serve_under_import_name

    serve_under_import_name()
