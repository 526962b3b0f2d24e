"""The served model: loaded from the store's champion pointer after verification, warmed, and
swapped atomically; a bundle that fails is refused and the previous model keeps serving."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.errors import BundleError
from core.io.store import ArtifactStore
from core.models import lean_predict_proba
from core.release.bundle import load_bundle, read_champion
from core.release.manifest import ChallengerPointer, Manifest
from core.release.rollout import read_challenger
from serving import metrics

WARM_UP = [("no puedo ingresar al portal", "")]


@dataclass(frozen=True)
class ServedModel:
    """A verified, warmed model and what /health reports about it."""

    bundle_id: str
    model: Any
    manifest: Manifest
    classes: np.ndarray
    loaded_at: str
    #: The digest its pointer pinned the manifest with (a helper process loading the same
    #: bundle checks it too).
    manifest_sha256: str | None = None

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
            "encoder": (self.manifest.encoder or {}).get("name"),
        }

    @property
    def embeds(self) -> bool:
        """Whether it runs the sentence encoder: tens of milliseconds a ticket, in native code
        that releases the GIL, so its batches run beside the event loop, not on it."""
        return self.manifest.encoder is not None

    def predict_proba(self, rows: list[tuple[str, str]]) -> np.ndarray:
        """Probabilities for (short_description, close_notes) rows, in ``classes`` order."""
        return lean_predict_proba(self.model, np.asarray(rows, dtype=object).reshape(-1, 2))


@dataclass
class WatchStatus:
    """How the champion watch is doing; /health shows it (the error text only to admins)."""

    last_check: str | None = None
    last_success: str | None = None
    consecutive_failures: int = 0
    failures_total: int = 0
    last_error_kind: str | None = None
    last_error: str | None = None
    failed_bundle_id: str | None = None

    def succeeded(self) -> None:
        self.last_success = self.last_check
        self.consecutive_failures = 0
        self.failed_bundle_id = None

    def failed(self, exc: BaseException, bundle_id: str | None) -> None:
        self.consecutive_failures += 1
        self.failures_total += 1
        self.last_error_kind = type(exc).__name__
        self.last_error = str(exc)[:500]
        if bundle_id is not None:
            self.failed_bundle_id = bundle_id

    def public(self) -> dict[str, Any]:
        return {
            "last_check": self.last_check,
            "last_success": self.last_success,
            "consecutive_failures": self.consecutive_failures,
            "failures_total": self.failures_total,
            "last_error_kind": self.last_error_kind,
        }


class ModelHolder:
    """Holds the current model; ``refresh`` loads a new champion when the pointer moves.

    ``refresh`` never raises: whatever goes wrong (an unreachable or slow store, a pointer that
    is not a pointer, a bundle that does not verify or load) is counted in ``status`` and the
    served model stays as it was. After failures the watch backs off (doubling, capped), and a
    bundle that failed to load is tried again on the same schedule, so a store hiccup at start-up
    heals by itself.
    """

    def __init__(
        self, store: ArtifactStore, poll_s: float = 10.0, max_backoff_s: float = 30.0
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.max_backoff_s = max(poll_s, max_backoff_s)
        self.current: ServedModel | None = None
        self.status = WatchStatus()
        #: The challenger (shadow or canary) and its pointer; None when there is none, or when
        #: its bundle failed to load (then nothing is routed to it and ``challenger_status``
        #: says why). Its failures never touch the champion or ``status``.
        self.challenger: ServedModel | None = None
        self.rollout: ChallengerPointer | None = None
        self.challenger_status = WatchStatus()
        self._refresh_lock = threading.Lock()
        self._retry_bundle_at: float = 0.0
        self._retry_challenger_at: float = 0.0

    def next_delay(self) -> float:
        """Seconds until the next check: the poll interval, doubled per consecutive failure."""
        failures = self.status.consecutive_failures
        if failures == 0:
            return self.poll_s
        return float(min(self.poll_s * 2 ** min(failures, 16), self.max_backoff_s))

    def refresh(self) -> bool:
        """Load the champion if it differs from the served one (True when a swap happened), and
        the challenger if it moved."""
        with self._refresh_lock:
            swapped = self._refresh_champion()
            self._refresh_challenger()
            return swapped

    def _refresh_challenger(self) -> None:
        status = self.challenger_status
        status.last_check = _now()
        pointer: ChallengerPointer | None = None
        try:
            pointer, _ = read_challenger(self.store)
            champion = self.current.bundle_id if self.current else None
            if pointer is None or not pointer.active or pointer.bundle_id == champion:
                self.challenger, self.rollout = None, None
            elif self.challenger is not None and self.challenger.bundle_id == pointer.bundle_id:
                self.rollout = pointer  # same model; the mode or the share may have changed
            elif (
                status.failed_bundle_id == pointer.bundle_id
                and time.monotonic() < self._retry_challenger_at
            ):
                return  # still backing off from this bundle's last failure
            else:
                self.challenger, self.rollout = None, None
                self.challenger = self._load(pointer.bundle_id, pointer.manifest_file_sha256)
                self.rollout = pointer
        except Exception as exc:  # a challenger that cannot load is not served, nothing more
            self.challenger, self.rollout = None, None
            status.failed(exc, pointer.bundle_id if pointer else None)
            self._retry_challenger_at = time.monotonic() + self.poll_s * 3
            return
        status.succeeded()

    def _refresh_champion(self) -> bool:
        self.status.last_check = _now()
        bundle_id: str | None = None
        try:
            pointer, _ = read_champion(self.store)
            if pointer is None or (
                self.current is not None and self.current.bundle_id == pointer.bundle_id
            ):
                self._succeeded()
                return False
            bundle_id = pointer.bundle_id
            if (
                self.status.failed_bundle_id == bundle_id
                and time.monotonic() < self._retry_bundle_at
            ):
                return False  # still backing off from this bundle's last failure
            previous = self.current
            self.current = self._load(bundle_id, pointer.manifest_file_sha256)
            metrics.set_served_model(
                (previous.version, previous.manifest.family) if previous else None,
                (self.current.version, self.current.manifest.family),
            )
        except Exception as exc:  # the watch must survive anything a check can raise
            self._failed(exc, bundle_id)
            return False
        self._succeeded()
        return True

    def _load(self, bundle_id: str, manifest_sha256: str | None) -> ServedModel:
        model, manifest = load_bundle(self.store, bundle_id, manifest_sha256)
        loaded_at = datetime.now(UTC).isoformat()
        served = ServedModel(
            bundle_id, model, manifest, np.asarray(model.classes_), loaded_at, manifest_sha256
        )
        probabilities = served.predict_proba(WARM_UP)
        if probabilities.shape != (1, len(model.classes_)):
            raise BundleError(f"bundle {bundle_id}: warm-up returned shape {probabilities.shape}")
        return served

    def _succeeded(self) -> None:
        self.status.succeeded()

    def _failed(self, exc: BaseException, bundle_id: str | None) -> None:
        metrics.WATCH_FAILURES.inc()
        self.status.failed(exc, bundle_id)
        if bundle_id is not None:
            self._retry_bundle_at = time.monotonic() + self.next_delay()


def _now() -> str:
    return datetime.now(UTC).isoformat()
