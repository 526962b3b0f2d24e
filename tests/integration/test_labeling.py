"""Which tickets to label next, over real HTTP: the label key is required, the batch keeps its
per-class quotas, holds no near-duplicates, and a label sent back takes its ticket out."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.monitoring.labeling import NEAR_DUPLICATE, NOVELTY_WEIGHT, jaccard
from core.predlog import PredictionLog
from core.settings import Settings
from core.text import normalize
from flows import cli
from serving.app import create_app
from tests.integration.conftest import publish_profiled_model, running

pytestmark = pytest.mark.integration
LABEL_KEY = "label-queue-key-of-16+"
LABELLED = {"X-API-Key": LABEL_KEY}
#: The first queue starts the monitoring lane's process (imports, then the computation): on a
#: loaded two-core machine that can take longer than httpx's default 5 s.
TIMEOUT = 120


def _words(entry: dict[str, str]) -> set[str]:
    return set(normalize(f"{entry['short_description']} {entry['close_notes']}").split())


def test_the_label_queue_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path / "home", label_api_keys=(LABEL_KEY,))
    publish_profiled_model(settings)
    tickets = pd.concat(
        [generate_tickets(240, "baseline", seed=21), generate_tickets(60, "new_product", seed=22)]
    )
    bodies = [
        {"short_description": row.short_description, "close_notes": row.close_notes}
        for row in tickets.itertuples()
    ]
    # One outage reported thirty times, word for word, and in near copies.
    outage = "no funciona la app del banco desde esta manana error al ingresar"
    bodies += [{"short_description": outage, "close_notes": ""}] * 20
    bodies += [{"short_description": f"{outage} {i}", "close_notes": ""} for i in range(10)]
    with running(create_app(settings)) as url:
        for start in range(0, len(bodies), 100):
            batch = {"tickets": bodies[start : start + 100]}
            assert httpx.post(f"{url}/predict/batch", json=batch).status_code == 200

        assert httpx.get(f"{url}/labeling/queue").status_code == 401
        wrong = httpx.get(f"{url}/labeling/queue", headers={"X-API-Key": "not-the-key-at-all"})
        assert wrong.status_code == 401
        refused = httpx.get(
            f"{url}/labeling/queue", params={"n": 0}, headers=LABELLED, timeout=TIMEOUT
        )
        assert refused.status_code == 400 and "n" in refused.json()["detail"]

        n = 40
        response = httpx.get(
            f"{url}/labeling/queue", params={"n": n}, headers=LABELLED, timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        body = response.json()
        queue = body["tickets"]
        assert len(queue) == n and body["unlabelled_considered"] == len(bodies)
        ids = [entry["request_id"] for entry in queue]
        assert len(set(ids)) == n
        for i, first in enumerate(queue):
            for second in queue[i + 1 :]:
                assert jaccard(_words(first), _words(second)) < NEAR_DUPLICATE, (first, second)
        assert sum(outage in entry["short_description"] for entry in queue) <= 1

        # Quotas: slots go round the predicted classes, so no class has more than its share
        # while another that had candidates left has fewer.
        per_class = Counter(entry["prediction"] for entry in queue)
        classes_seen = len(per_class)
        assert max(per_class.values()) <= math.ceil(n / classes_seen) + 1, per_class
        assert classes_seen >= 5
        # Within a class, the most uncertain (or novel) first.
        for label in per_class:
            scores = [e["score"] for e in queue if e["prediction"] == label]
            assert scores == sorted(scores, reverse=True)
        # New-product tickets are far from the training vocabulary: their unknown words add
        # to the score, and the reason says so.
        product = ("cripto", "stablecoin", "tokenizacion", "esg", "billetera", "wallet")
        novel = [e for e in queue if any(w in e["short_description"].lower() for w in product)]
        assert novel and all(e["novelty"] > 0 for e in novel)
        assert all("unknown to the model" in e["reason"] for e in novel)
        for e in queue:
            assert e["score"] == pytest.approx(1 - e["margin"] + NOVELTY_WEIGHT * e["novelty"])

        # A label sent back through the usual path takes its ticket out of the next queue.
        first = queue[0]
        feedback = {"request_id": first["request_id"], "true_label": first["prediction"]}
        assert httpx.post(f"{url}/feedback", json=feedback, headers=LABELLED).status_code == 200
        again = httpx.get(
            f"{url}/labeling/queue", params={"n": n}, headers=LABELLED, timeout=TIMEOUT
        ).json()
        assert first["request_id"] not in {e["request_id"] for e in again["tickets"]}
        assert again["unlabelled_considered"] == len(bodies) - 1
        assert set(body["labels"]) >= set(per_class), "the categories a labeller picks from"

        # Undo (the labelling page's): only with the key, only the label it set, and the
        # ticket is back in the queue; a label someone changed since stays.
        undo = f"{url}/feedback/{first['request_id']}"
        mine = {"true_label": first["prediction"]}
        assert httpx.delete(undo, params=mine).status_code == 401
        other = {"true_label": "otra_categoria"}
        changed = httpx.delete(undo, params=other, headers=LABELLED)
        assert changed.status_code == 409 and "relabelled" in changed.json()["detail"]
        assert httpx.delete(undo, params=mine, headers=LABELLED).json() == {
            "request_id": first["request_id"],
            "cleared": True,
        }
        gone = httpx.delete(undo, params=mine, headers=LABELLED)
        assert gone.status_code == 404 and "no label to take back" in gone.json()["detail"]
        too_long = httpx.delete(undo, params={"true_label": "x" * 101}, headers=LABELLED)
        assert too_long.status_code == 400 and "true_label" in too_long.json()["detail"]
        back = httpx.get(
            f"{url}/labeling/queue", params={"n": n}, headers=LABELLED, timeout=TIMEOUT
        ).json()
        assert back["unlabelled_considered"] == len(bodies)
        assert httpx.post(f"{url}/feedback", json=feedback, headers=LABELLED).status_code == 200

        # The command line chooses the same tickets, into a file to fill in.
        monkeypatch.setenv("TICKETS_HOME", str(settings.home))
        out = tmp_path / "to-label.csv"
        assert cli.main(["label-queue", "--n", "25", "--out", str(out)]) == 0
        written = pd.read_csv(out, keep_default_na=False)
        served = httpx.get(
            f"{url}/labeling/queue", params={"n": 25}, headers=LABELLED, timeout=TIMEOUT
        ).json()
        assert written["request_id"].tolist() == [e["request_id"] for e in served["tickets"]]
        assert (written["true_label"] == "").all() and "reason" in written.columns

        # The desk fills in some labels and hands the file back: those tickets are labelled
        # and leave the queue; a bad label stops the command naming its row, storing nothing.
        filled = written.copy()
        filled.loc[:2, "true_label"] = filled.loc[:2, "prediction"]
        bad = filled.copy()
        bad.loc[4, "true_label"] = "x" * 101
        bad.to_csv(out, index=False)
        assert cli.main(["feedback", "--file", str(out)]) == 2
        log = PredictionLog(settings.predictions_path())
        assert log.window()["true_label"].notna().sum() == 1, "only the /feedback label so far"
        filled.to_csv(out, index=False)
        assert cli.main(["feedback", "--file", str(out)]) == 0
        labelled = log.window().dropna(subset=["true_label"])
        assert set(filled["request_id"][:3]) <= set(labelled["request_id"])
        log.close()
        after = httpx.get(
            f"{url}/labeling/queue", params={"n": 25}, headers=LABELLED, timeout=TIMEOUT
        ).json()
        assert not set(filled["request_id"][:3]) & {e["request_id"] for e in after["tickets"]}
