"""The flows' own logic (which branch runs, what they return), called with ``.fn()`` and the
tasks replaced by recorders; the real tasks run in tests/integration under a Prefect server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from core.errors import ConfigurationError, TrainingError
from core.monitoring.drift import DriftReport, DriftTest
from core.records import RetrainAction, RetrainDecision, Verdict
from core.release.manifest import Manifest
from core.settings import Settings
from core.training.tuning import StudyResult
from flows import monitor as monitor_flow
from flows import train as train_flow
from flows import train_steps


def _report(fired: bool) -> DriftReport:
    test = DriftTest("text_length_ks", 0.4, 0.1, Verdict.DRIFT if fired else Verdict.NO_DRIFT, "")
    return DriftReport([test], 500, 0, 1.0 if fired else 0.0, 0.5, fired, [])


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, name: str, result: Any = None) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return result

        return record

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _decision(action: str = RetrainAction.REQUESTED) -> RetrainDecision:
    return RetrainDecision(
        "d1", "2026-11-30T00:00:00+00:00", "b1", ("x",), action, "why", "monitor"
    )


def _patch_monitor(
    monkeypatch: pytest.MonkeyPatch,
    recorder: Recorder,
    fired: bool | None,
    action: str = RetrainAction.REQUESTED,
) -> None:
    manifest = Manifest(bundle_id="b1", family="linear_svm")
    checked = None if fired is None else (_report(fired), manifest)
    monkeypatch.setattr(monitor_flow, "check_drift", recorder("check_drift", checked))
    decide = recorder("decide_retraining", _decision(action))
    monkeypatch.setattr(monitor_flow, "decide_retraining", decide)
    monkeypatch.setattr(monitor_flow, "publish_report", recorder("publish_report", "mlflow-run"))
    monkeypatch.setattr(monitor_flow, "record_report", recorder("record_report", "r1"))
    monkeypatch.setattr(monitor_flow, "emit_drift_event", recorder("emit_drift_event", "event-1"))
    monkeypatch.setattr(monitor_flow, "record_retrain_outcome", recorder("record_outcome"))
    summary = type("Summary", (), {"promoted": True})()
    monkeypatch.setattr(monitor_flow, "train", recorder("train", summary))


def test_without_a_champion_the_monitor_stops_early(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, settings: Settings
) -> None:
    _patch_monitor(monkeypatch, recorder, None)
    assert monitor_flow.monitor.fn(settings=settings)["no_champion"]
    assert recorder.names() == ["check_drift"]


def test_quiet_traffic_is_reported_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, settings: Settings
) -> None:
    _patch_monitor(monkeypatch, recorder, False)
    result = monitor_flow.monitor.fn(window="2h", retrain=True, settings=settings)
    assert recorder.names() == ["check_drift", "publish_report", "record_report"]
    assert not result["drift_detected"] and not result["retrained"] and result["event_id"] is None
    assert recorder.calls[0][1] == (settings, "2h")


def test_drift_without_the_retrain_branch_leaves_retraining_to_the_event(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, settings: Settings
) -> None:
    _patch_monitor(monkeypatch, recorder, True)
    result = monitor_flow.monitor.fn(settings=settings)
    assert recorder.names() == [
        "check_drift",
        "decide_retraining",
        "emit_drift_event",
        "publish_report",
        "record_report",
    ], "the event goes out before the report: a failing report cannot lose the retrain"
    _, args, _ = recorder.calls[2]
    assert args[-1] is False, "the event asks the retrain deployment to act"
    assert result["fired"] == ["text_length_ks"] and result["event_id"] == "event-1"
    assert result["model_version"] == "b1" and not result["retrained"]


def test_drift_with_the_retrain_branch_retrains_in_the_same_run(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, settings: Settings
) -> None:
    _patch_monitor(monkeypatch, recorder, True)
    result = monitor_flow.monitor.fn(retrain=True, settings=settings)
    assert recorder.names() == [
        "check_drift",
        "decide_retraining",
        "emit_drift_event",
        "publish_report",
        "record_report",
        "train",
        "record_outcome",
    ]
    assert recorder.calls[2][1][-1] is True, "the event says this run retrains itself"
    assert recorder.calls[5][2] == {"settings": settings, "include_feedback": True}
    assert recorder.calls[6][1][1:] == ("d1", "promoted")
    assert (
        result["retrained"]
        and result["promoted"]
        and result["retrain_decision"] == RetrainAction.REQUESTED
    )


def test_suppressed_drift_is_reported_but_not_retrained(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, settings: Settings
) -> None:
    _patch_monitor(monkeypatch, recorder, True, action=RetrainAction.SUPPRESSED_COOLDOWN)
    result = monitor_flow.monitor.fn(retrain=True, settings=settings)
    assert "train" not in recorder.names()
    assert (
        result["retrain_decision"] == RetrainAction.SUPPRESSED_COOLDOWN and not result["retrained"]
    )


def test_a_retrain_that_fails_is_recorded_as_failed(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, settings: Settings
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("training broke")

    monkeypatch.setattr(monitor_flow, "train", broken)
    monkeypatch.setattr(monitor_flow, "record_retrain_outcome", recorder("record_outcome"))
    with disable_run_logger(), pytest.raises(RuntimeError, match="training broke"):
        monitor_flow.retrain.fn(reason="drift", decision_id="d7", settings=settings)
    assert recorder.calls == [("record_outcome", (settings, "d7", "failed"), {})]


def test_train_needs_a_data_path(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="no training data"):
        train_flow.train.fn(settings=settings)


def test_train_fails_clearly_when_no_family_completes(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, demo_frame: pd.DataFrame, tmp_path: Path
) -> None:
    failed = StudyResult("logistic_regression", {}, float("nan"), 0, 0, 1.0, error="boom")
    monkeypatch.setattr(train_steps, "run_studies", lambda *args, **kwargs: [failed])
    monkeypatch.setattr(train_steps, "snapshot_data", lambda *args: None)
    monkeypatch.setattr(
        train_steps, "load_data", lambda *a: (demo_frame, demo_frame, type("R", (), {})())
    )
    with pytest.raises(TrainingError, match="logistic_regression: boom"):
        train_flow.train.fn(settings=settings, data_path=str(tmp_path / "x.csv"))
