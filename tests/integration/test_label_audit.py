"""Suspected label errors at training: a table with known injected noise goes through the train
flow (Prefect, MLflow on SQLite); the flags are in the MLflow run and beside the bundle,
``tickets audit-labels`` lists them with their suggestions, and the refit leaves them out when
asked to."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.release.bundle import delete_bundle, load_bundle
from core.release.snapshots import read_snapshot
from core.settings import Settings
from core.training.label_audit import precision_recall, read_audit
from flows import cli

pytestmark = pytest.mark.integration


def test_training_flags_injected_label_errors_and_can_leave_them_out(
    tmp_path: Path,
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.train import train

    frame = generate_tickets(800, "baseline", seed=12)
    noisy = frame.copy()
    classes = sorted(frame["label"].unique())
    changed = np.random.default_rng(1).choice(len(frame), size=60, replace=False)
    for row in changed:
        noisy.at[row, "label"] = next(c for c in classes if c != frame.at[row, "label"])
    data = tmp_path / "noisy.csv"
    noisy.to_csv(data, index=False)
    settings = Settings(
        home=tmp_path / "home",
        families=("logistic_regression",),
        trials=1,
        timeout_s=60,
        profile="fast",
        exclude_suspected_labels=True,
    )
    summary = train(settings=settings, data_path=str(data))
    store = open_store(settings)
    _, manifest = load_bundle(store, summary.bundle_id)
    suspects = read_audit(store, summary.bundle_id)
    assert manifest.suspected_labels == len(suspects) > 0
    assert manifest.suspected_labels_excluded

    # Rows are positions in the training split, which the snapshot keeps: map them back.
    assert manifest.data_snapshot is not None
    train_rows, _ = read_snapshot(store, manifest.data_snapshot)
    texts, labels = noisy["short_description"].iloc[changed], noisy["label"].iloc[changed]
    noisy_texts = set(zip(texts, labels, strict=True))
    truly_changed = {
        i
        for i, key in enumerate(
            zip(train_rows["short_description"], train_rows["label"], strict=True)
        )
        if key in noisy_texts
    }
    assert all(train_rows["label"].iat[s.row] == s.given for s in suspects)
    precision, recall = precision_recall({s.row for s in suspects}, truly_changed)
    assert recall >= 0.5 and precision >= 0.3, (precision, recall)
    refit_rows = manifest.reference_profile.rows if manifest.reference_profile else None
    assert refit_rows == len(train_rows) - len(suspects), "the refit left them out"

    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.get_run(str(summary.mlflow_run_id))
    assert run.data.metrics["suspected_labels"] == len(suspects)
    table = Path(client.download_artifacts(run.info.run_id, "suspected_labels.json"))
    logged = json.loads(table.read_text())
    assert len(logged["data"]) == len(suspects) and "suggested" in logged["columns"]

    monkeypatch.setenv("TICKETS_HOME", str(settings.home))
    out = tmp_path / "suspects.csv"
    assert cli.main(["audit-labels", "--out", str(out), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(suspects)} training rows look mislabelled (left out of its refit" in printed
    first = suspects[0]
    assert f"{first.given} -> {first.suggested}" in printed
    written = pd.read_csv(out)
    assert len(written) == len(suspects) and set(written["suggested"]) <= set(classes)

    delete_bundle(store, summary.bundle_id)
    assert not store.list("label-audits/"), "the audit goes with its bundle"
