"""The served model: loaded from the store's champion pointer after verification, warmed, and
swapped atomically; a bundle that fails is refused and the previous model keeps serving."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.bundle import BundleError, load_bundle, read_champion
from core.manifest import Manifest
from core.models import lean_predict_proba
from core.store import ArtifactStore, StoreError

WARM_UP = [("no puedo ingresar al portal", "")]


@dataclass(frozen=True)
class ServedModel:
    """A verified, warmed model and what /health reports about it."""

    bundle_id: str
    model: Any
    manifest: Manifest
    classes: np.ndarray
    loaded_at: str

    @property
    def version(self) -> str:
        return self.manifest.model_version

    def describe(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "bundle_id": self.bundle_id,
            "family": self.manifest.family,
            "trained_at": self.manifest.created_at,
            "loaded_at": self.loaded_at,
            "labels": [str(label) for label in self.classes],
            "test_macro_f1": self.manifest.test_macro_f1,
        }

    def predict_proba(self, rows: list[tuple[str, str]]) -> np.ndarray:
        """Probabilities for (short_description, close_notes) rows, in ``classes`` order."""
        return lean_predict_proba(self.model, np.asarray(rows, dtype=object).reshape(-1, 2))


class ModelHolder:
    """Holds the current model; ``refresh`` loads a new champion if the pointer moved."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.current: ServedModel | None = None
        self.last_failure: dict[str, str] | None = None
        self._refresh_lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the champion if it differs from the served one; True when a swap happened."""
        with self._refresh_lock:
            try:
                pointer, _ = read_champion(self.store)
            except (BundleError, StoreError) as exc:
                self._fail(None, exc)
                return False
            if pointer is None or (self.current and self.current.bundle_id == pointer.bundle_id):
                return False
            bundle_id = pointer.bundle_id
            if self.last_failure and self.last_failure.get("bundle_id") == bundle_id:
                return False
            try:
                candidate = self._load(bundle_id)
            except Exception as exc:  # any failure to load keeps the old model serving
                self._fail(bundle_id, exc)
                return False
            self.current = candidate
            self.last_failure = None
            return True

    def _load(self, bundle_id: str) -> ServedModel:
        model, manifest = load_bundle(self.store, bundle_id)
        loaded_at = datetime.now(UTC).isoformat()
        served = ServedModel(bundle_id, model, manifest, np.asarray(model.classes_), loaded_at)
        probabilities = served.predict_proba(WARM_UP)
        if probabilities.shape != (1, len(model.classes_)):
            raise BundleError(f"bundle {bundle_id}: warm-up returned shape {probabilities.shape}")
        return served

    def _fail(self, bundle_id: str | None, exc: Exception) -> None:
        self.last_failure = {
            "bundle_id": bundle_id or "",
            "error": str(exc)[:500],
            "at": datetime.now(UTC).isoformat(),
        }
