"""Promotion: same evaluation rows for both models, margin plus paired bootstrap, compare-and-set
against racing promotions, idempotence."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.io.store import LocalStore
from core.release.bundle import champion_bundle_id, serialize_model, write_bundle
from core.release.manifest import Manifest
from core.release.promotion import PromotionOutcome, decide_promotion, promote_if_better
from core.training.families import build_pipeline, default_params

TEXT = ["short_description", "close_notes"]
MARGIN = 0.01


def _fit(rows: pd.DataFrame) -> Any:
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    return model.fit(rows[TEXT], rows["label"].to_numpy(dtype=object))


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    data = generate_tickets(2400, "baseline", seed=21)
    return {"weak": _fit(data.head(60)), "medium": _fit(data.head(400)), "strong": _fit(data)}


@pytest.fixture(scope="module")
def evaluation_set() -> pd.DataFrame:
    return generate_tickets(1000, "baseline", seed=22)


def _publish(store: LocalStore, bundle_id: str, model: Any) -> Manifest:
    manifest = Manifest(bundle_id=bundle_id, family="linear_svm")
    return write_bundle(store, serialize_model(model), manifest)


def _promote(store: LocalStore, name: str, model: Any, rows: pd.DataFrame) -> PromotionOutcome:
    return promote_if_better(store, _publish(store, name, model), model, rows, MARGIN, seed=0)


def test_first_is_promoted_an_equal_one_is_not_a_better_one_is_and_again_is_a_no_op(
    tmp_path: Path, models: dict[str, Any], evaluation_set: pd.DataFrame
) -> None:
    store = LocalStore(tmp_path)
    first = _promote(store, "weak", models["weak"], evaluation_set)
    assert first.promoted and "no champion yet" in first.reason
    same = _promote(store, "weak-again", models["weak"], evaluation_set)
    assert not same.promoted and same.gain == 0 and "below the margin" in same.reason
    assert champion_bundle_id(store) == "weak"
    better = _promote(store, "strong", models["strong"], evaluation_set)
    assert better.promoted and better.champion_bundle_id == "weak"
    assert better.gain is not None and better.gain >= MARGIN
    assert better.gain_ci is not None and better.gain_ci[0] > 0
    assert better.evaluation_rows == len(evaluation_set)
    assert champion_bundle_id(store) == "strong"
    again = promote_if_better(
        store,
        Manifest(bundle_id="strong", family="linear_svm"),
        models["strong"],
        evaluation_set,
        MARGIN,
        seed=0,
    )
    assert again == better, "a retry after the pointer moved reports the decision it kept"
    assert champion_bundle_id(store) == "strong"


def _race(store: LocalStore, models: dict[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
    manifests = {name: _publish(store, name, models[name]) for name in ("medium", "strong")}
    barrier = threading.Barrier(len(manifests))
    outcomes: dict[str, PromotionOutcome] = {}

    def run(name: str) -> None:
        barrier.wait()
        outcomes[name] = promote_if_better(
            store, manifests[name], models[name], rows, MARGIN, seed=0
        )

    threads = [threading.Thread(target=run, args=(name,)) for name in manifests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_racing_promotions_end_with_the_better_challenger(
    tmp_path: Path, models: dict[str, Any], evaluation_set: pd.DataFrame
) -> None:
    for attempt in range(3):
        store = LocalStore(tmp_path / str(attempt))
        _promote(store, "weak", models["weak"], evaluation_set)
        outcomes = _race(store, models, evaluation_set)
        assert champion_bundle_id(store) == "strong"
        assert outcomes["strong"].promoted


@pytest.mark.parametrize("damage", ["garbage pointer", "champion bundle gone"])
def test_an_unreadable_champion_refuses_the_promotion(
    tmp_path: Path, models: dict[str, Any], evaluation_set: pd.DataFrame, damage: str
) -> None:
    """Only a pointer that does not exist means "no champion"; anything else that stops the
    comparison fails the promotion instead of letting the challenger win unexamined."""
    from core.errors import PromotionError
    from core.io.store import CHAMPION_KEY
    from core.release.bundle import MODEL_FILE, bundle_key

    store = LocalStore(tmp_path)
    _promote(store, "weak", models["weak"], evaluation_set)
    if damage == "garbage pointer":
        store.put(CHAMPION_KEY, b"[]")
    else:
        store.delete(bundle_key("weak", MODEL_FILE))
    with pytest.raises(PromotionError, match="promotion refused"):
        _promote(store, "strong", models["strong"], evaluation_set)
    pointer = store.get(CHAMPION_KEY)
    assert pointer == b"[]" or b'"weak"' in pointer, "the pointer did not move"


def test_promotion_needs_the_margin_and_a_gain_that_is_not_noise() -> None:
    truth = ["a", "b", "c", "d"] * 250
    champion = list(truth)
    for i in range(0, 1000, 5):
        champion[i] = "a" if truth[i] != "a" else "b"
    assert decide_promotion(truth, champion, None, 0.01, seed=0).promote
    better = list(truth)
    for i in range(0, 1000, 10):
        better[i] = "a" if truth[i] != "a" else "b"
    decision = decide_promotion(truth, better, champion, 0.01, seed=0)
    assert decision.promote and decision.gain_ci is not None and decision.gain_ci[0] > 0
    assert "interval excludes 0" in decision.reason
    small = list(champion)
    small[0] = truth[0]
    decision = decide_promotion(truth, small, champion, 0.0, seed=0)
    assert not decision.promote and "could be noise" in decision.reason
    decision = decide_promotion(truth, champion, better, 0.01, seed=0)
    assert not decision.promote and "below the margin" in decision.reason
