"""What runs inside the explanations' process (serving/explain.py), in a module that imports
nothing heavy until it is called. The process runs at the lowest CPU priority and keeps its own
verified copy of the served bundle, so an explanation's seconds of Python never hold the
interpreter that answers /predict, and on busy cores the kernel runs predictions first (an
explanation is an agent's question, a prediction is the desk's traffic)."""

from __future__ import annotations

from typing import Any

from serving.lane_process import lower_priority

EXPLAIN_NICE = 19
_state: dict[str, tuple[str, Any]] = {}


def explain_bundle(
    settings: Any,
    bundle_id: str,
    manifest_sha256: str | None,
    short_description: str,
    close_notes: str,
    top_k: int,
) -> dict[str, Any]:
    """The explanation of a ticket by bundle ``bundle_id`` (loaded and checked against its
    manifest once per process, skops only), as /explain answers it."""
    from core.explain import explain

    model, manifest = load(settings, bundle_id, manifest_sha256)
    result = explain(model, short_description, close_notes, top_k)
    return {"model_version": manifest.model_version, "family": manifest.family} | (result.as_dict())


def load(settings: Any, bundle_id: str, manifest_sha256: str | None) -> tuple[Any, Any]:
    """The bundle's model and manifest, loaded once per process (the last one kept)."""
    lower_priority(EXPLAIN_NICE)
    cached = _state.get("model")
    if cached is None or cached[0] != bundle_id:
        from core.io.store import open_store
        from core.release.bundle import load_bundle

        cached = (bundle_id, load_bundle(open_store(settings), bundle_id, manifest_sha256))
        _state["model"] = cached
    return cached[1]


def warm() -> int:
    """Import what explanations need, at the lower priority, before the first one."""
    lower_priority(EXPLAIN_NICE)
    import core.explain
    import core.release.bundle  # noqa: F401

    return 0
