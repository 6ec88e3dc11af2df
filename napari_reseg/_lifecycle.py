"""The lifecycle of what a widget starts and connects, written once for every widget: background work (its
progress, result or error delivered on the GUI thread; cancellable), the event connections it made, and the
moment the widget is closed, when both must stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker
from qtpy.QtCore import QCoreApplication, QEvent, QObject
from qtpy.QtWidgets import QWidget

Callback = Callable[..., None]


class BackgroundTask:
    """At most one worker at a time. Callbacks run on the GUI thread; `on_finish` runs last, whatever the end.

    The worker (napari's, for its thread-safe signals) runs on a Python thread of its own, not on Qt's global
    thread pool that napari's `worker.start()` uses. Qt runs its own parallel work on that pool (image scaling
    and conversion, e.g. when napari's activity indicator starts its animation) while the GUI thread waits
    holding Python's GIL, so pool threads of ours waiting for the GIL freeze the interface for good (seen on
    2 cores). A pool of our own would deadlock the same way when it is destroyed with a worker still running.
    When the owner goes away or napari quits, the work is asked to stop and nothing more is delivered.
    """

    def __init__(self, owner: QObject) -> None:
        self.worker: FunctionWorker | GeneratorWorker | None = None
        self._stop: Callable[[], None] | None = None
        self._abandoned = False
        owner.destroyed.connect(lambda *_: self._abandon())
        application = QCoreApplication.instance()
        if application is not None:
            application.aboutToQuit.connect(self._abandon)

    def _abandon(self) -> None:
        """The owner is gone (napari closed): stop the work and deliver nothing more to it."""
        self._abandoned = True
        self.cancel()

    def _deliver(self, callback: Callback) -> Callback:
        return lambda *args: None if self._abandoned else callback(*args)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(
        self,
        function: Callable,
        *args: Any,
        on_yield: Callback | None = None,
        on_done: Callback | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        stop: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> FunctionWorker | GeneratorWorker:
        """Run `function(*args, **kwargs)` in a worker; an error goes to `on_error`, never to a traceback.

        `stop` is how `cancel` asks the work to end (default: a generator stops at its next yield).
        napari's activity dock is not used: its animated indicator repaints the whole window all the time
        (with software OpenGL a quarter of the CPU), and each widget shows its own progress.
        """
        if self.worker is not None:
            raise RuntimeError("a task is already running")  # the widgets disable their start buttons first
        worker = create_worker(function, *args, _ignore_errors=True, **kwargs)
        self._stop = stop
        for signal, callback in (
            (getattr(worker, "yielded", None), on_yield),
            (worker.returned, on_done),
            (worker.errored, on_error),
        ):
            if signal is not None and callback is not None:
                signal.connect(self._deliver(callback))
        worker.finished.connect(lambda: self._finished(worker, None if self._abandoned else on_finish))
        self.worker = worker
        threading.Thread(target=worker.run, name=f"napari-reseg: {function.__name__}").start()
        return worker

    def _finished(self, worker: FunctionWorker | GeneratorWorker, on_finish: Callable[[], None] | None) -> None:
        if self.worker is worker:
            self.worker = None
        if on_finish is not None:
            on_finish()

    def cancel(self) -> None:
        """Ask the work to stop (`stop`), or a generator at its next yield; a function worker runs out."""
        if self.worker is None:
            return
        if self._stop is not None:
            self._stop()
        elif isinstance(self.worker, GeneratorWorker):
            self.worker.quit()


class _ClosingWatcher(QObject):
    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self._callback = callback
        self._called = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        closed = event.type() == QEvent.Type.Close
        undocked = event.type() == QEvent.Type.ParentChange and watched.parent() is None
        if (closed or undocked) and not self._called:
            self._called = True
            self._callback()
        return False


def when_closed(widget: QWidget, callback: Callable[[], None]) -> None:
    """Call `callback` once when `widget` is closed, or taken out of its dock (napari's dock close button
    removes the widget from its dock without closing it)."""
    widget.installEventFilter(_ClosingWatcher(widget, callback))


class Connections:
    """Event connections a widget made to the viewer, its layers and the plugin's own events, undone together
    when the widget closes (it must not go on reacting, nor keep layers alive).

    When Qt destroys the widget without closing it (napari quits), only napari's own emitters are undone:
    Qt drops connections to a destroyed receiver itself, and touching a Qt signal whose object Qt has
    already deleted crashes the process.
    """

    def __init__(self, owner: QObject) -> None:
        self._made: list[tuple[Any, Callable]] = []
        owner.destroyed.connect(lambda *_: self.disconnect_all(qt_signals=False))

    def connect(self, emitter: Any, callback: Callable) -> None:
        emitter.connect(callback)
        self._made.append((emitter, callback))

    def disconnect_all(self, qt_signals: bool = True) -> None:
        for emitter, callback in self._made:
            if not qt_signals and type(emitter).__module__.startswith(("PyQt", "PySide")):
                continue
            try:
                emitter.disconnect(callback)
            except (RuntimeError, TypeError, ValueError):
                pass  # the emitter's object is gone already
        self._made.clear()
