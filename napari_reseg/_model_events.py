"""One signal for "the set of models changed" (a model was kept or removed), so every picker refreshes at once."""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal


class ModelCatalogueEvents(QObject):
    changed = Signal()


_events: ModelCatalogueEvents | None = None


def model_catalogue_events() -> ModelCatalogueEvents:
    """The process-wide instance, made on first use (after napari has created the Qt application)."""
    global _events
    if _events is None:
        _events = ModelCatalogueEvents()
    return _events
