"""Trying a model on live traffic and going back: the challenger pointer (shadow or canary),
sticky canary routing, and rollback of the champion to an earlier one from its history.

Every move is a compare-and-set on a pointer, like promotion (core/release/promotion.py): two
operators, or the monitor and an operator, never both win. Callers hold the promotion lock
around the moves of the champion pointer (flows/rollout.py)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import BundleError, PromotionError, StoreError
from core.io.store import ArtifactStore
from core.release.bundle import (
    champion_history,
    champion_pointer,
    read_champion,
    read_manifest,
    stored_bundles,
    swap_pointer,
)
from core.release.manifest import ROLLOUT_MODES, ChallengerPointer, ChampionPointer, PointerDecision

CHALLENGER_KEY = "challenger.json"


def read_challenger(store: ArtifactStore) -> tuple[ChallengerPointer | None, str | None]:
    """The challenger pointer (active or stopped) and its token; (None, None) when none was set."""
    data, token = store.read_versioned(CHALLENGER_KEY)
    if data is None:
        return None, None
    return ChallengerPointer.from_json(data, store.uri(CHALLENGER_KEY)), token


def active_challenger(store: ArtifactStore) -> ChallengerPointer | None:
    pointer, _ = read_challenger(store)
    return pointer if pointer is not None and pointer.active else None


def resolve_bundle(store: ArtifactStore, wanted: str) -> str:
    """The bundle id that ``wanted`` names: a bundle id, or a model version (the MLflow version
    a manifest records). A name that matches nothing is a PromotionError saying what exists."""
    bundles = [bundle_id for bundle_id, _ in stored_bundles(store)]
    if wanted in bundles:
        return wanted
    for entry in reversed(champion_history(store)):
        if entry.model_version == wanted:
            return entry.bundle_id
    for bundle_id in reversed(bundles):
        try:
            if read_manifest(store, bundle_id).model_version == wanted:
                return bundle_id
        except BundleError:
            continue
    raise PromotionError(f"no bundle or model version {wanted!r} in the store")


def start_challenger(
    store: ArtifactStore,
    wanted: str,
    mode: str,
    percent: float = 0.0,
    shadow_share: float = 1.0,
    source: str = "cli",
) -> ChallengerPointer:
    """Set the challenger (replacing any other): the bundle must verify (model file against its
    manifest) and must not be the champion."""
    if mode not in ROLLOUT_MODES:
        raise PromotionError(f"mode must be one of {ROLLOUT_MODES}, not {mode!r}")
    if mode == "canary" and not 0 < percent <= 100:
        raise PromotionError(f"percent must be above 0 and at most 100, not {percent:g}")
    if not 0 < shadow_share <= 1:
        raise PromotionError(
            f"the shadow's share must be above 0 and at most 1, not {shadow_share:g}"
        )
    bundle_id = resolve_bundle(store, wanted)
    champion, _ = read_champion(store)
    if champion is not None and champion.bundle_id == bundle_id:
        raise PromotionError(f"{wanted} is the champion already; pick another model")
    verified = champion_pointer(store, bundle_id)  # checks the model file against the manifest
    pointer = ChallengerPointer(
        bundle_id=bundle_id,
        family=verified.family,
        model_version=verified.model_version,
        manifest_file_sha256=verified.manifest_file_sha256,
        mode=mode,
        percent=percent if mode == "canary" else 0.0,
        shadow_share=shadow_share,
        source=source,
    )
    for _ in range(5):
        _, token = read_challenger(store)
        if store.compare_and_put(CHALLENGER_KEY, pointer.to_json(), token):
            return pointer
    raise StoreError("the challenger pointer kept changing; try again")


def stop_challenger(
    store: ArtifactStore, reason: str, expected_bundle: str | None = None
) -> ChallengerPointer | None:
    """Stop the active challenger, keeping why. With ``expected_bundle`` only that challenger
    stops: a rollback decided for one canary never stops another started meanwhile. Returns the
    stopped pointer, or None when nothing (matching) was active."""
    for _ in range(5):
        pointer, token = read_challenger(store)
        if pointer is None or not pointer.active:
            return None
        if expected_bundle is not None and pointer.bundle_id != expected_bundle:
            return None
        stopped = pointer.model_copy(
            update={
                "mode": "stopped",
                "stopped_at": datetime.now(UTC).isoformat(),
                "stop_reason": reason,
            }
        )
        if store.compare_and_put(CHALLENGER_KEY, stopped.to_json(), token):
            return stopped
    raise StoreError("the challenger pointer kept changing; try again")


def _place(digest: bytes) -> float:
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def canary_bucket(key: str, secret: bytes) -> float:
    """Where a key falls in [0, 100): the same key always lands in the same place, in every
    worker and after every restart (so a client stays on one side of the split), but only the
    service knows where: the place is an HMAC of the key under the service's routing secret, so
    nobody can pick keys that land on the canary without trying them on the service."""
    return _place(hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest())


def routes_to_canary(key: str, percent: float, secret: bytes) -> bool:
    return percent > 0 and canary_bucket(key, secret) < percent


def shadow_selected(request_id: str, share: float) -> bool:
    """Whether the shadow scores this ticket: a stable share of the service's own request ids
    (which nobody else chooses), independent of the canary's split."""
    digest = hashlib.sha256(f"shadow:{request_id}".encode()).digest()
    return share >= 1 or _place(digest) < share * 100


@dataclass(frozen=True)
class RollbackPlan:
    current: ChampionPointer
    target: ChampionPointer


def rollback_target(history: list[ChampionPointer], to: str | None = None) -> RollbackPlan:
    """The champion to go back to: ``to`` (a bundle id or model version from the history), else
    the most recent earlier champion that no rollback has already moved away from (so a second
    rollback goes further back instead of undoing the first)."""
    if not history:
        raise PromotionError("no champion to roll back")
    current = history[-1]
    if to is not None:
        for entry in reversed(history[:-1]):
            named = to in (entry.bundle_id, entry.model_version)
            if named and entry.bundle_id != current.bundle_id:
                return RollbackPlan(current, entry)
        if to in (current.bundle_id, current.model_version):
            raise PromotionError(f"{to} is the champion already")
        raise PromotionError(f"{to} was never the champion here; `tickets status` lists them")
    abandoned: set[str] = set()
    for entry in reversed(history):
        decision = entry.decision
        if entry is not current and entry.bundle_id not in abandoned | {current.bundle_id}:
            return RollbackPlan(current, entry)
        if decision is not None and decision.kind == "rollback" and decision.previous_bundle_id:
            abandoned.add(decision.previous_bundle_id)
    raise PromotionError("no earlier champion to roll back to")


def roll_back(
    store: ArtifactStore, from_bundle: str, to_bundle: str, reason: str
) -> ChampionPointer:
    """Move the champion pointer from ``from_bundle`` back to ``to_bundle`` (a plan made by
    ``rollback_target``), by compare-and-set; the target's bundle must still verify. Idempotent:
    a retry after the move finds it done. A pointer that moved elsewhere meanwhile refuses."""
    for _ in range(5):
        current, token = read_champion(store)
        if current is None:
            raise PromotionError("no champion to roll back")
        done = current.decision
        if (
            current.bundle_id == to_bundle
            and done is not None
            and done.kind == "rollback"
            and done.previous_bundle_id == from_bundle
        ):
            return current
        if current.bundle_id != from_bundle:
            raise PromotionError(
                f"the champion moved to {current.bundle_id} meanwhile; nothing rolled back"
            )
        target = champion_pointer(store, to_bundle)  # verifies the target's model file
        decision = PointerDecision(
            reason=reason,
            previous_bundle_id=current.bundle_id,
            previous_model_version=current.model_version,
            challenger_macro_f1=float(target.test_macro_f1 or 0.0),
            champion_macro_f1=current.test_macro_f1,
            kind="rollback",
        )
        pointer = target.model_copy(update={"decision": decision})
        if swap_pointer(store, pointer, token):
            return pointer
    raise StoreError("the champion pointer kept changing during the rollback; try again")


def promote_shadow(
    store: ArtifactStore,
    challenger: ChallengerPointer,
    judged_champion: str,
    decision: PointerDecision,
) -> ChampionPointer:
    """Make the shadow challenger the champion on live evidence gathered against
    ``judged_champion``, by compare-and-set, and stop it as a challenger. Idempotent; refuses
    when the champion changed since the evidence was gathered (it judged another model)."""
    for _ in range(5):
        current, token = read_champion(store)
        if current is not None and current.bundle_id == challenger.bundle_id:
            stop_challenger(store, "promoted", expected_bundle=challenger.bundle_id)
            return current
        if current is None or current.bundle_id != judged_champion:
            raise PromotionError(
                "the champion changed since the shadow's evidence was gathered; judge again"
            )
        pointer = champion_pointer(store, challenger.bundle_id, decision)
        if swap_pointer(store, pointer, token):
            stop_challenger(store, "promoted", expected_bundle=challenger.bundle_id)
            return pointer
    raise StoreError("the champion pointer kept changing during the promotion; try again")


def protected_bundles(store: ArtifactStore, depth: int) -> set[str]:
    """Bundles retention must keep: the last ``depth`` distinct champions of the history (what a
    rollback may go back to) and the active challenger."""
    kept: list[str] = []
    for entry in reversed(champion_history(store)):
        if entry.bundle_id not in kept:
            kept.append(entry.bundle_id)
        if len(kept) >= depth:
            break
    challenger = active_challenger(store)
    if challenger is not None:
        kept.append(challenger.bundle_id)
    return set(kept)
