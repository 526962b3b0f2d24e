"""``POST /explain`` over real HTTP on a served linear champion: the terms are words of the
ticket, and the parts plus the intercept give the model's own decision score."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from core.io.store import open_store
from core.release.bundle import load_bundle
from core.settings import Settings
from serving.app import create_app
from tests.integration.conftest import publish_model, running

pytestmark = pytest.mark.integration


def test_explain_shows_words_of_the_ticket_that_add_up_to_the_score(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame, "b1", "1")
    model, _ = load_bundle(open_store(settings), "b1")
    ticket = {
        "short_description": "No puedo entrar al portal: ¿contraseña caducada?",
        "close_notes": "Se restableció la contraseña del usuario jperez@empresa.es",
    }
    app = create_app(settings)
    with running(app) as url:
        answer = httpx.post(f"{url}/explain", json=ticket, params={"top_k": 4}, timeout=30)
        predicted = httpx.post(f"{url}/predict", json=ticket, timeout=30).json()
        bad = httpx.post(f"{url}/explain", json={"close_notes": "sin asunto"}, timeout=30)
        explainers = app.state.explain_process.process_ids()
    # Computed by the explanations' own process (explain_isolation="process", the default).
    assert len(explainers) == 1 and os.getpid() not in explainers
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["method"], body["model_version"]) == ("linear", "1")
    assert body["prediction"] == predicted["prediction"]
    assert body["probability"] == pytest.approx(predicted["probability"], abs=1e-6)
    assert [c["label"] for c in body["classes"]] == [
        p["label"] for p in predicted["probabilities"][:2]
    ]
    row = np.asarray([[ticket["short_description"], ticket["close_notes"]]], dtype=object)
    decision = np.asarray(model.steps[-1][1].decision_function(model[:-1].transform(row)))[0]
    classes = list(model.classes_)
    for explained in body["classes"]:
        expected = decision[classes.index(explained["label"])]
        parts = sum(w["weight"] for w in explained["words"]) + sum(explained["other"].values())
        assert parts + explained["intercept"] == pytest.approx(expected, abs=1e-6)
        assert explained["score"] == pytest.approx(expected, abs=1e-9)
        assert 1 <= len(explained["top_terms"]) <= 4
        for term in explained["top_terms"] + explained["words"]:
            assert ticket[term["field"]][term["start"] : term["end"]] == term["word"]
        ranked = [abs(t["weight"]) for t in explained["top_terms"]]
        assert ranked == sorted(ranked, reverse=True)
        assert 0 < explained["explained_share"] <= 1
    assert bad.status_code == 400 and "short_description" in bad.text


def test_a_killed_explanations_process_costs_one_503_and_is_replaced(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame, "b1", "1")
    ticket = {"short_description": "No puedo entrar al portal"}
    app = create_app(settings)
    with running(app) as url:
        assert httpx.post(f"{url}/explain", json=ticket, timeout=30).status_code == 200
        (pid,) = app.state.explain_process.process_ids()
        os.kill(pid, signal.SIGKILL)
        answers = [httpx.post(f"{url}/explain", json=ticket, timeout=30) for _ in range(2)]
        predicted = httpx.post(f"{url}/predict", json=ticket, timeout=30)
        replaced = app.state.explain_process.process_ids()
    assert answers[0].status_code == 503, answers[0].text
    assert int(answers[0].headers["retry-after"]) > 0
    assert "explanations' process stopped" in answers[0].text
    assert answers[1].status_code == 200, answers[1].text
    assert predicted.status_code == 200
    assert replaced and pid not in replaced
