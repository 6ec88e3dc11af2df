"""The user's model folder, watched, so that every model picker refreshes when a model is kept or removed,
whether by a widget of this window, of another window, or by `reseg finetune` in a terminal. The folder on
disk is the one state the pickers share: nothing process-wide is kept in memory."""

from __future__ import annotations

import contextlib

from qtpy.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from reseg.zoo.catalogue import user_model_dir

# A kept model lands as two files (weights, then card): one refresh after they settle, not one per file.
SETTLE_MS = 150


class CatalogueWatcher(QObject):
    """`changed` fires once the user's model folder has changed and settled."""

    changed = Signal()

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        folder = user_model_dir()
        with contextlib.suppress(OSError):  # a folder that cannot be made holds no models: nothing to watch
            folder.mkdir(parents=True, exist_ok=True)
        self._watcher = QFileSystemWatcher(self)
        if folder.is_dir():
            self._watcher.addPath(str(folder))
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._watcher.directoryChanged.connect(self._settle.start)
        self._settle.timeout.connect(self.changed)
