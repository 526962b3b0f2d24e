"""The shadow scorer on its own: it fills in the log rows, in a thread or in its process, and a
shadow that fails is counted and skipped, never raised."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.io.store import LocalStore
from core.predlog import PredictionLog, PredictionRecord
from core.release.bundle import read_champion, read_manifest, swap_champion
from core.release.rollout import start_challenger
from core.settings import Settings
from serving import metrics
from serving.model_holder import ModelHolder
from serving.rollout import ShadowItem, ShadowScorer

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "bundles"
CHAMPION, CHALLENGER = "golden-logistic-regression", "golden-linear-svm"


def _setup(tmp_path: Path) -> tuple[Settings, ModelHolder, PredictionLog]:
    settings = Settings(home=tmp_path / "home")
    store = LocalStore(settings.home / "store")
    for name in (CHAMPION, CHALLENGER):
        shutil.copytree(GOLDEN / name, settings.home / "store" / "bundles" / name)
    assert swap_champion(store, read_manifest(store, CHAMPION), read_champion(store)[1])
    start_challenger(store, CHALLENGER, "shadow")
    holder = ModelHolder(store)
    holder.refresh()
    assert holder.challenger is not None
    log = PredictionLog(settings.home / "predictions.db")
    tickets = ["no puedo entrar al correo", "la impresora no imprime", "vpn caída"]
    log.record(
        [PredictionRecord(f"r{i}", "1", text, "", "x", 0.9, {}) for i, text in enumerate(tickets)]
    )
    return settings, holder, log


def _offer(scorer: ShadowScorer, log: PredictionLog) -> None:
    items = log.window(limit=10)[["request_id", "short_description", "close_notes"]]
    scorer.offer([ShadowItem(*row) for row in items.itertuples(index=False)])
    assert scorer.join(120), "the shadow caught up"


@pytest.mark.parametrize("isolated", [False, True], ids=["thread", "process"])
def test_the_shadow_fills_in_the_rows_it_scores(tmp_path: Path, isolated: bool) -> None:
    settings, holder, log = _setup(tmp_path)
    scorer = ShadowScorer(holder, log, 100, settings if isolated else None)
    try:
        _offer(scorer, log)
    finally:
        scorer.close()
    rows = log.window(limit=10)
    log.close()
    assert rows["shadow_prediction"].notna().all()
    assert set(rows["shadow_version"]) == {holder.challenger.version}  # type: ignore[union-attr]
    assert rows["shadow_prediction"].isin(holder.challenger.classes).all()  # type: ignore[union-attr]


def test_a_shadow_that_fails_is_counted_and_the_loop_goes_on(tmp_path: Path) -> None:
    settings, holder, log = _setup(tmp_path)
    # The worker loaded the challenger; its process will not: the bundle is gone.
    shutil.rmtree(settings.home / "store" / "bundles" / CHALLENGER)
    failed = metrics.SHADOW.labels("failed")._value.get()
    scorer = ShadowScorer(holder, log, 100, settings)
    try:
        _offer(scorer, log)
        assert metrics.SHADOW.labels("failed")._value.get() == failed + 3
        assert scorer._thread is not None and scorer._thread.is_alive()
    finally:
        scorer.close()
    assert log.window(limit=10)["shadow_prediction"].isna().all()
    log.close()
