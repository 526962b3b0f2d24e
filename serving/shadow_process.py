"""What runs inside the shadow's process (serving/rollout.py), in a module that imports nothing
heavy until it is called. The process lowers its priority first, so on busy cores the kernel
favours the worker that answers requests; it keeps the challenger loaded and its own connection
to the prediction log, and writes the shadow's answers into the rows already there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving.lane_process import lane_log, lower_priority

SHADOW_NICE = 10
#: Tickets per model call.
CHUNK = 64
_state: dict[str, Any] = {}


def score(
    settings: Any,
    bundle_id: str,
    manifest_sha256: str | None,
    items: list[tuple[str, str, str]],
) -> int:
    """Score (request id, short description, close notes) items with the challenger
    ``bundle_id`` (loaded and verified once per process) and record its answers; returns how
    many were written."""
    lower_priority(SHADOW_NICE)
    model, classes, version = _model(settings, bundle_id, manifest_sha256)
    scores = shadow_scores(model, classes, version, items, CHUNK)
    lane_log(settings).record_shadow(scores)
    return len(scores)


def shadow_scores(
    model: Any,
    classes: Any,
    version: str,
    items: list[tuple[str, str, str]],
    chunk: int,
    between: Callable[[], None] | None = None,
) -> list[Any]:
    """The challenger's label and confidence for (request id, short, notes) items, ``chunk``
    tickets a model call (``between`` runs after each: the thread mode yields there)."""
    import numpy as np

    from core.models import lean_predict_proba
    from core.predlog import ShadowScore

    scores: list[Any] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        rows = np.asarray([(short, notes) for _, short, notes in part], dtype=object)
        probabilities = lean_predict_proba(model, rows)
        best = probabilities.argmax(axis=1)
        scores += [
            ShadowScore(rid, version, str(classes[j]), round(float(probabilities[i, j]), 6))
            for i, ((rid, _, _), j) in enumerate(zip(part, best.tolist(), strict=True))
        ]
        if between is not None:
            between()
    return scores


def _model(settings: Any, bundle_id: str, manifest_sha256: str | None) -> tuple[Any, Any, str]:
    cached = _state.get("model")
    if cached is not None and cached[0] == bundle_id:
        return cached[1]
    import numpy as np

    from core.io.store import open_store
    from core.release.bundle import load_bundle

    model, manifest = load_bundle(open_store(settings), bundle_id, manifest_sha256)
    loaded = (model, np.asarray(model.classes_), manifest.model_version)
    _state["model"] = (bundle_id, loaded)
    return loaded
