"""MLflow tracking of a drift check: one run per check in the ``<experiment>-monitoring``
experiment, with each test's statistic, the fired tests and the report."""

from __future__ import annotations

from typing import Any

from core.release.registry import experiment_id, mlflow_client, run_for
from core.settings import Settings


def log_drift_report(
    settings: Settings,
    report: dict[str, Any],
    markdown: str,
    key: str,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """One run per check (``key``, the flow run) in the ``<experiment>-monitoring`` experiment;
    returns its id. A retry logs into the same run."""
    import mlflow

    client = mlflow_client(settings)
    exp_id = experiment_id(settings, f"{settings.mlflow_experiment}-monitoring")
    run_id = run_for(client, exp_id, key, "drift-check", {})
    with mlflow.start_run(run_id=run_id) as run:
        metrics = {
            "drift_score": report["drift_score"],
            "drift_detected": float(report["drift_detected"]),
            "n_predictions": report["n_predictions"],
            "n_feedback": report["n_feedback"],
        }
        for test in report["tests"]:
            if test["statistic"] is not None:
                metrics[test["name"]] = test["statistic"]
        mlflow.log_metrics({key: float(value) for key, value in metrics.items()})
        mlflow.set_tags(
            {
                "model_version": str(report.get("model_version")),
                "fired": ",".join(report["fired"]),
                **(extra_tags or {}),
            }
        )
        mlflow.log_dict(report, "drift_report.json")
        mlflow.log_text(markdown, "drift_report.md")
        return str(run.info.run_id)
