"""The monitor flow against real components: Prefect's server (artifacts, events, concurrency
limit), MLflow on SQLite, the prediction log, and the retrain branch promoting a better model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.predlog import PredictionLog, PredictionRecord
from core.release.bundle import champion_bundle_id, load_bundle
from core.settings import Settings
from serving.app import create_app
from tests.integration.conftest import artifact_keys, publish_profiled_model, running

pytestmark = pytest.mark.integration
TEXT = ["short_description", "close_notes"]


def _serve_traffic(settings: Settings, tickets: pd.DataFrame) -> str:
    """What the service does for each request: predict with the champion and log, with feedback."""
    store = open_store(settings)
    model, manifest = load_bundle(store, champion_bundle_id(store) or "")
    version = manifest.model_version
    probabilities = np.asarray(model.predict_proba(tickets[TEXT]))
    log = PredictionLog(settings.predictions_path())
    log.record(
        [
            PredictionRecord(
                request_id=f"r{i}",
                model_version=version,
                short_description=str(row.short_description),
                close_notes=str(row.close_notes),
                prediction=str(model.classes_[p.argmax()]),
                confidence=float(p.max()),
                top_probabilities={},
                true_label=str(row.label),
            )
            for i, (row, p) in enumerate(zip(tickets.itertuples(), probabilities, strict=True))
        ]
    )
    log.close()
    return version


def _events(api_url: str, name: str) -> list[dict]:
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": "2020-01-01T00:00:00Z"}}}
    response = httpx.post(f"{api_url}/events/filter", json=body, timeout=10)
    response.raise_for_status()
    return list(response.json()["events"])


@pytest.mark.slow
def test_drift_is_detected_reported_and_the_retrain_branch_promotes_a_better_model(
    tmp_path: Path, prefect_api: str
) -> None:
    from flows.monitor import monitor
    from flows.train import train

    data = tmp_path / "base.csv"
    generate_tickets(1500, "baseline", seed=3).to_csv(data, index=False)
    settings = Settings(
        home=tmp_path / "home",
        data_path=str(data),
        families=("linear_svm",),
        trials=1,
        timeout_s=60,
        profile="fast",
    )
    assert monitor(window="1h", settings=settings)["no_champion"]
    first = train(settings=settings)
    old_version = _serve_traffic(settings, generate_tickets(400, "new_category", seed=4))

    state = monitor(window="1h", retrain=True, settings=settings, return_state=True)
    result = state.result()
    assert result["drift_detected"] and result["model_version"] == old_version
    assert "concept_macro_f1_drop" in result["fired"]
    assert result["retrained"] and result["promoted"], result["training"].promotion_reason
    promotion = result["training"].promotion
    assert promotion.gain is not None and promotion.gain >= settings.promotion_margin
    assert promotion.gain_ci is not None and promotion.gain_ci[0] > 0
    assert result["training"].production["new_classes"] == ["fraude_suplantacion"]
    store = open_store(settings)
    assert champion_bundle_id(store) == result["training"].bundle_id != first.bundle_id
    _, manifest = load_bundle(store, result["training"].bundle_id)
    assert "fraude_suplantacion" in manifest.labels

    assert "drift-report" in artifact_keys(str(state.state_details.flow_run_id))
    deadline = time.monotonic() + 30
    while not _events(prefect_api, "tickets.drift.detected") and time.monotonic() < deadline:
        time.sleep(0.5)
    events = _events(prefect_api, "tickets.drift.detected")
    assert any(event["id"] == result["event_id"] for event in events)

    client = mlflow.MlflowClient(settings.tracking_uri())
    drift_run = client.get_run(result["mlflow_run_id"])
    assert drift_run.data.metrics["drift_detected"] == 1.0
    training_run = client.get_run(result["training"].mlflow_run_id)
    assert training_run.data.tags["promoted"] == "true"
    assert training_run.data.metrics["promotion_gain_ci_low"] > 0

    log = PredictionLog(settings.predictions_path())
    (stored_report,) = log.drift_reports("2020-01-01")
    assert stored_report.model_version == old_version and stored_report.drift_detected
    assert stored_report.retrain_action == "requested"
    assert "concept_macro_f1_drop" in stored_report.report.fired
    decisions = log.promotions("2020-01-01")
    assert [d.promoted for d in decisions] == [True, True], "the first model and the retrain"
    assert decisions[-1].champion_version == old_version and decisions[-1].gain_ci is not None
    log.close()

    def announced() -> bool:
        promoted_events = _events(prefect_api, "tickets.model.promoted")
        return any(
            e["payload"]["challenger"] == result["training"].bundle_id for e in promoted_events
        )

    deadline = time.monotonic() + 30
    while not announced() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert announced(), "the promotion was announced as an event"

    quiet = monitor(window="1h", settings=settings)
    assert quiet["insufficient_data"] and not quiet["drift_detected"] and not quiet["retrained"]


def test_a_run_failing_between_the_retrain_decision_and_the_retrain_leaves_no_decision(
    tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MLflow report fails (a non-transient error, so no task retry hides it) after the
    decision to retrain in this flow was stored: the decision is undone, and the next run
    requests the retrain instead of saying "suppressed: cooldown" for a day."""
    import tasks.monitoring
    from flows.monitor import monitor

    settings = Settings(home=tmp_path / "home")
    publish_profiled_model(settings)
    _serve_traffic(settings, generate_tickets(400, "new_category", seed=4))

    def mlflow_refuses(*args: object, **kwargs: object) -> str:
        raise ValueError("MLflow refused the report")

    monkeypatch.setattr(tasks.monitoring, "log_drift_report", mlflow_refuses)
    state = monitor(window="1h", retrain=True, settings=settings, return_state=True)
    assert state.is_failed()
    log = PredictionLog(settings.predictions_path())
    assert log.decisions() == [], "the requested retrain never ran: its decision is undone"
    log.close()

    monkeypatch.undo()
    again = monitor(window="1h", settings=settings)
    assert again["drift_detected"] and again["retrain_decision"] == "requested"
    assert again["event_id"], "the event that asks the retrain deployment went out"


def test_a_fired_drift_test_names_the_new_product_words_and_tickets_carrying_them(
    tmp_path: Path, prefect_api: str
) -> None:
    """New-product tickets reach the service: the monitor's report, as stored for the
    dashboard, in MLflow, and in the event a notification is made from, says which words came
    in, with the request ids of tickets that carry them."""
    from flows.monitor import monitor

    settings = Settings(home=tmp_path / "home")
    publish_profiled_model(settings)
    _serve_traffic(settings, generate_tickets(400, "new_product", seed=4))
    result = monitor(window="1h", settings=settings)
    assert result["drift_detected"] and "oov_rate" in result["fired"]

    product = {"billetera", "cripto", "criptoactivos", "stablecoin", "tokenizacion", "esg"}
    log = PredictionLog(settings.predictions_path())
    (stored,) = log.drift_reports("2020-01-01")
    fired = {test.name: test for test in stored.report.tests if test.fired}
    explanation = fired["oov_rate"].explanation
    assert explanation is not None
    top = [shift["name"] for shift in explanation["gained"][:5]]
    assert product & set(top), top
    rows = log.window()
    carriers = rows[rows["request_id"].isin(explanation["examples"])]
    assert len(carriers) == len(explanation["examples"]) >= 1
    texts = (carriers["short_description"] + " " + carriers["close_notes"]).str.lower()
    assert texts.str.contains("|".join(product)).all()
    log.close()

    client = mlflow.MlflowClient(settings.tracking_uri())
    body = json.loads(
        Path(client.download_artifacts(result["mlflow_run_id"], "drift_report.json")).read_text()
    )
    assert any("What changed" in reason and "billetera" in reason for reason in body["reasons"])
    events = _events(prefect_api, "tickets.drift.detected")
    event = next(e for e in events if e["id"] == result["event_id"])
    assert any(word in " ".join(event["payload"]["reasons"]) for word in product)

    # The estimate without labels rides along: stored, on /metrics and on the dashboard.
    assert stored.report.estimated is not None
    estimated = stored.report.estimated["cbpe"]["macro_f1"]
    with running(create_app(settings)) as url:
        metrics = httpx.get(f"{url}/metrics", timeout=60).text
        assert f"tickets_estimated_macro_f1 {estimated}" in metrics
        assert 'tickets_estimated_performance{bound="low",estimator="atc",metric="accuracy"}' in (
            metrics
        )
        page = httpx.get(f"{url}/dashboard", timeout=60).text
        assert "macro-F1 estimated (no labels)" in page


def test_flow_run_parameters_hold_no_secret(tmp_path: Path, prefect_api: str) -> None:
    """Prefect stores a flow run's parameters and shows them in its UI: the settings passed to a
    flow appear there with every secret masked, database and tracking URLs included."""
    from prefect import get_client

    from core.auth.local_secrets import new_webhook_secret
    from core.setting_groups import NotifySettings, SmtpSettings
    from flows.monitor import monitor

    webhook_secret = new_webhook_secret()
    secrets = {
        "prediction_log_url": "postgresql://tickets:pg-password-1@127.0.0.1:1/tickets",
        "mlflow_tracking_uri": "http://ml:mlflow-password-2@127.0.0.1:1",
        "admin_api_key": "admin-key-3-long-enough-to-be-valid",
        "webhook_secrets": (webhook_secret,),
        "label_api_keys": ("label-key-5-long-enough",),
        "prefect_api_auth_string": "admin:prefect-password-6",
    }
    settings = Settings(
        home=tmp_path / "home",
        notify=NotifySettings(slack_url="https://hooks.example/slack-secret-7"),
        smtp=SmtpSettings(host="127.0.0.1", password="smtp-password-8"),
        **secrets,  # type: ignore[arg-type]
    )
    state = monitor(window="1h", settings=settings, return_state=True)
    assert state.result()["no_champion"]
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    stored = json.dumps(run.parameters)
    assert "settings" in run.parameters and "home" in run.parameters["settings"]
    for marker in ("password-1", "password-2", "key-3", "key-5", "password-6"):
        assert marker not in stored, marker
    assert webhook_secret.removeprefix("whsec_") not in stored
    assert "secret-7" not in stored and "password-8" not in stored
