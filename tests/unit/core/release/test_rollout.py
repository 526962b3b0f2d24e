"""The challenger pointer, sticky canary routing, the champion history and rollback, and what
retention keeps for a rollback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.errors import BundleError, PromotionError, StoreError
from core.io.store import LocalStore
from core.release.bundle import (
    champion_history,
    delete_bundle,
    read_champion,
    serialize_model,
    swap_champion,
    write_bundle,
)
from core.release.manifest import Manifest, MlflowRef, PointerDecision
from core.release.retention import bundles_to_delete
from core.release.rollout import (
    canary_bucket,
    promote_shadow,
    protected_bundles,
    read_challenger,
    roll_back,
    rollback_target,
    routes_to_canary,
    start_challenger,
    stop_challenger,
)


def _bundle(store: LocalStore, bundle_id: str, version: str) -> Manifest:
    manifest = Manifest(bundle_id=bundle_id, family="logistic_regression")
    manifest = manifest.model_copy(update={"mlflow": MlflowRef(model_version=version)})
    return write_bundle(store, serialize_model({"weights": [1, 2, 3]}), manifest)


def _champion(store: LocalStore, bundle_id: str, version: str) -> None:
    manifest = _bundle(store, bundle_id, version)
    _, token = read_champion(store)
    assert swap_champion(store, manifest, token)


SECRET = b"the-service-routing-secret"


def test_canary_routing_is_sticky_and_close_to_its_share() -> None:
    keys = [str(uuid.uuid4()) for _ in range(20_000)]
    for percent in (1, 10, 37.5):
        share = sum(routes_to_canary(key, percent, SECRET) for key in keys) / len(keys) * 100
        assert abs(share - percent) < 1.0, (percent, share)
    assert all(canary_bucket(key, SECRET) == canary_bucket(key, SECRET) for key in keys[:100])
    # Raising the share only adds clients: nobody on the canary at 10% leaves it at 20%.
    assert all(routes_to_canary(k, 20, SECRET) for k in keys if routes_to_canary(k, 10, SECRET))
    assert not any(routes_to_canary(key, 0, SECRET) for key in keys[:1000])


def test_which_keys_go_to_the_canary_depends_on_the_services_secret() -> None:
    """An unkeyed hash let a client compute offline which keys land on the canary."""
    keys = [f"client-{i}" for i in range(5000)]
    ours = {k for k in keys if routes_to_canary(k, 10, SECRET)}
    theirs = {k for k in keys if routes_to_canary(k, 10, b"another-secret")}
    assert 400 < len(ours) < 600 and 400 < len(theirs) < 600
    assert len(ours & theirs) < 100  # about 10% of 10%: unrelated


def test_a_challenger_starts_verified_and_stops_only_when_it_is_the_expected_one(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    _champion(store, "b1", "1")
    _bundle(store, "b2", "2")
    _bundle(store, "b3", "3")
    with pytest.raises(PromotionError, match="champion already"):
        start_challenger(store, "1", "shadow")
    with pytest.raises(PromotionError, match="no bundle or model version"):
        start_challenger(store, "9", "shadow")
    shadow = start_challenger(store, "2", "shadow", shadow_share=0.5)  # by model version
    assert (shadow.bundle_id, shadow.mode, shadow.shadow_share) == ("b2", "shadow", 0.5)
    canary = start_challenger(store, "b3", "canary", percent=10)
    assert read_challenger(store)[0] == canary
    assert stop_challenger(store, "rolled back", expected_bundle="b2") is None
    stopped = stop_challenger(store, "rolled back", expected_bundle="b3")
    assert stopped is not None and stopped.mode == "stopped" and not stopped.active
    assert stopped.stop_reason == "rolled back"
    assert stop_challenger(store, "again") is None
    # A bundle whose model file was altered is refused.
    store.put("bundles/b2/model.skops", b"tampered")
    with pytest.raises(BundleError):
        start_challenger(store, "b2", "shadow")


def _roll_back(store: LocalStore, to: str | None, reason: str) -> str:
    plan = rollback_target(champion_history(store), to)
    return roll_back(store, plan.current.bundle_id, plan.target.bundle_id, reason).bundle_id


def test_rollback_goes_back_through_the_history_and_never_undoes_itself(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for number in (1, 2, 3):
        _champion(store, f"b{number}", str(number))
    assert [entry.bundle_id for entry in champion_history(store)] == ["b1", "b2", "b3"]
    assert _roll_back(store, None, "bad answers") == "b2"
    pointer, _ = read_champion(store)
    assert pointer is not None and pointer.bundle_id == "b2"
    assert pointer.decision is not None and pointer.decision.kind == "rollback"
    assert pointer.decision.previous_bundle_id == "b3"
    # A retry of the same move finds it done; a move planned from a stale champion refuses.
    assert roll_back(store, "b3", "b2", "bad answers").bundle_id == "b2"
    with pytest.raises(PromotionError, match="moved to b2"):
        roll_back(store, "b1", "b3", "stale plan")
    # A second rollback goes further back, not forward to the model just rolled away from.
    assert _roll_back(store, None, "still bad") == "b1"
    assert _roll_back(store, "3", "it was fine after all") == "b3"
    with pytest.raises(PromotionError, match="champion already"):
        rollback_target(champion_history(store), "b3")
    with pytest.raises(PromotionError, match="never the champion"):
        rollback_target(champion_history(store), "b9")


def test_the_current_pointer_counts_in_the_history_even_if_its_entry_was_lost(
    tmp_path: Path,
) -> None:
    """A crash between the compare-and-set and the history write."""
    store = LocalStore(tmp_path)
    _champion(store, "b1", "1")
    _champion(store, "b2", "2")
    for key in store.list("champion-history"):
        if key.endswith("-b2.json"):
            store.delete(key)
    assert [entry.bundle_id for entry in champion_history(store)] == ["b1", "b2"]
    assert _roll_back(store, None, "lost entry") == "b1"


def test_a_shadow_is_promoted_only_over_the_champion_it_was_judged_against(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    _champion(store, "b1", "1")
    _bundle(store, "s", "2")
    shadow = start_challenger(store, "s", "shadow")
    decision = PointerDecision(reason="live", challenger_macro_f1=0.9, kind="shadow")
    with pytest.raises(PromotionError, match="champion changed"):
        promote_shadow(store, shadow, "b0", decision)
    assert promote_shadow(store, shadow, "b1", decision).bundle_id == "s"
    assert promote_shadow(store, shadow, "b1", decision).bundle_id == "s"  # a retry: done
    stopped, _ = read_challenger(store)
    assert stopped is not None and stopped.mode == "stopped" and stopped.stop_reason == "promoted"
    pointer, _ = read_champion(store)
    assert pointer is not None and pointer.decision is not None
    assert pointer.decision.kind == "shadow"


def test_retention_keeps_what_a_rollback_and_the_challenger_need(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for number in range(1, 6):
        _champion(store, f"b{number}", str(number))
    _bundle(store, "c", "6")
    start_challenger(store, "c", "canary", percent=5)
    protected = protected_bundles(store, depth=3)
    assert protected == {"b5", "b4", "b3", "c"}
    bundles = [(f"b{n}", f"2026-01-0{n}") for n in range(1, 6)] + [("c", "2026-01-09")]
    doomed = bundles_to_delete(bundles, "b5", keep=1, protected=frozenset(protected))
    assert doomed == ["b1", "b2"]
    for bundle_id in doomed:
        delete_bundle(store, bundle_id)
    # The history still names them; a rollback to one fails on its bundle, not silently.
    with pytest.raises((BundleError, StoreError)):
        roll_back(store, "b5", "b1", "too far back")
