"""The Prefect tasks' own logic, called with ``.fn()`` (no server): what each reads, returns and
writes. Their orchestration is covered by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from core.io.store import open_store
from core.predlog import PredictionLog, PredictionRecord
from core.release.bundle import read_champion, swap_champion
from core.settings import Settings
from core.training.tuning import StudyResult, TuningData
from tasks import monitoring, publishing, training, training_data


@pytest.fixture(autouse=True)
def _no_run_logger() -> Iterator[None]:
    with disable_run_logger():
        yield


@pytest.fixture
def task_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", families=("linear_svm",), trials=1, timeout_s=30)


def _winner() -> StudyResult:
    from core.training.families import default_params

    return StudyResult("linear_svm", default_params("linear_svm"), 0.9, 1, 0, 1.0)


def test_load_data_splits_the_table(task_settings: Settings, demo_csv: Path) -> None:
    train, test, report = training_data.load_data.fn(task_settings, str(demo_csv), None)
    assert len(train) + len(test) == report.rows_kept and report.classes == 9
    assert set(test["label"]) <= set(train["label"])


def test_tune_family_returns_the_study_result(
    task_settings: Settings, demo_frame: pd.DataFrame
) -> None:
    data = TuningData(demo_frame, "spanish", cv_folds=2, seed=0)
    result = training.tune_family.fn("linear_svm", data, task_settings)
    assert result.ok and result.trials == 1 and 0.5 < result.cv_macro_f1 <= 1


def test_refit_write_and_check_drift_on_the_champion(
    task_settings: Settings, demo_frame: pd.DataFrame
) -> None:
    from core.release.manifest import MlflowRef
    from core.training.refit import build_manifest

    train, test = demo_frame.iloc[:450], demo_frame.iloc[450:]
    model, evaluation, profile, seconds = training.refit_and_score.fn(
        _winner(), train, test, task_settings
    )
    assert evaluation.n == len(test) and evaluation.macro_f1 > 0.5 and seconds > 0
    labels = [str(label) for label in model.classes_]
    manifest = build_manifest(
        _winner(), evaluation, profile, MlflowRef(), {}, task_settings, labels
    )
    stored, uri = publishing.write_bundle.fn(task_settings, model, manifest)
    assert uri.endswith(f"bundles/{manifest.bundle_id}") and "model.skops" in stored.files

    assert monitoring.check_drift.fn(task_settings, "1h") is None, "no champion yet"
    store = open_store(task_settings)
    assert swap_champion(store, stored, read_champion(store)[1])
    checked = monitoring.check_drift.fn(task_settings, "1h")
    assert checked is not None
    report, read_back = checked
    assert read_back == stored and report.n_predictions == 0 and report.insufficient_data


def test_add_feedback_joins_labelled_production_rows(
    task_settings: Settings, demo_frame: pd.DataFrame
) -> None:
    """Known labels join; a new label joins once it has enough rows, else it is counted out."""
    records = [
        PredictionRecord(f"k{i}", "1", f"certificado {i}", "", "a", 0.9, {}, "certificados")
        for i in range(3)
    ]
    records += [
        PredictionRecord(f"n{i}", "1", f"fraude {i}", "", "a", 0.4, {}, "fraude") for i in range(10)
    ]
    records += [
        PredictionRecord(f"s{i}", "1", f"rara {i}", "", "a", 0.4, {}, "rara") for i in range(2)
    ]
    records.append(PredictionRecord("unlabelled", "1", "hola", "", "a", 0.9, {}))
    log = PredictionLog(task_settings.predictions_path())
    log.record(records)
    log.close()
    train, test = demo_frame.iloc[:450], demo_frame.iloc[450:]
    merged_train, merged_test, report = training_data.add_feedback.fn(task_settings, train, test)
    assert report["rows_read"] == 15 and report["rows_dropped_small_new_classes"] == 2
    assert report["new_classes"] == ["fraude"]
    assert report["train_rows"] + report["evaluation_rows"] == 13
    assert len(merged_train) + len(merged_test) == len(demo_frame) + 13
    assert (merged_test["label"] == "fraude").sum() == 2


def test_the_task_runner_follows_the_settings() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from core.setting_groups import ScaleSettings
    from tasks.scale import task_runner

    threads = task_runner(Settings(max_concurrent_studies=3))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    local = task_runner(Settings(scale=ScaleSettings(task_runner="dask", dask_workers=3)))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["processes"] is True
    assert local.cluster_kwargs["threads_per_worker"] == 1
    remote = task_runner(
        Settings(scale=ScaleSettings(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    )
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
