"""The holder's challenger: loaded beside the champion, dropped when it cannot load (the
champion unaffected), and a rollback served by the very next check."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.io.store import LocalStore
from core.release.bundle import champion_history, read_champion, read_manifest, swap_champion
from core.release.rollout import roll_back, rollback_target, start_challenger
from serving.model_holder import ModelHolder

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "bundles"
CHAMPION, OTHER = "golden-logistic-regression", "golden-xgboost"


def _store(tmp_path: Path) -> LocalStore:
    for name in (CHAMPION, OTHER):
        shutil.copytree(GOLDEN / name, tmp_path / "bundles" / name)
    store = LocalStore(tmp_path)
    for name in (OTHER, CHAMPION):
        assert swap_champion(store, read_manifest(store, name), read_champion(store)[1])
    return store


def test_a_challenger_that_cannot_load_leaves_the_champion_alone(tmp_path: Path) -> None:
    store = _store(tmp_path)
    holder = ModelHolder(store, poll_s=0.01)
    start_challenger(store, OTHER, "canary", percent=30)
    assert holder.refresh()
    assert holder.current is not None and holder.current.bundle_id == CHAMPION
    assert holder.challenger is not None and holder.challenger.bundle_id == OTHER
    assert holder.rollout is not None and holder.rollout.percent == 30

    start_challenger(store, OTHER, "shadow")
    (tmp_path / "bundles" / OTHER / "model.skops").write_bytes(b"altered after it was set")
    holder.challenger = None  # as a freshly started worker: it loads the challenger's bundle
    holder.refresh()
    assert holder.challenger is None and holder.rollout is None
    assert holder.challenger_status.consecutive_failures == 1
    assert holder.challenger_status.last_error_kind == "BundleError"
    assert holder.status.consecutive_failures == 0
    assert holder.current is not None and holder.current.bundle_id == CHAMPION


def test_a_rollback_is_served_by_the_next_check(tmp_path: Path) -> None:
    store = _store(tmp_path)
    holder = ModelHolder(store, poll_s=3600)
    holder.refresh()
    assert holder.current is not None and holder.current.bundle_id == CHAMPION
    plan = rollback_target(champion_history(store), None)
    roll_back(store, plan.current.bundle_id, plan.target.bundle_id, "test")
    assert holder.refresh(), "one check after the rollback swaps the model"
    assert holder.current.bundle_id == OTHER
