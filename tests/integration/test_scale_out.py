"""The train flow on a real Dask cluster of two worker processes, its studies shared through a
throw-away PostgreSQL server: the same flow code as on threads, trials of one study from both
workers, the table read once per worker, and a champion as good as the thread runner's."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import optuna
import psycopg
import pytest

from core.setting_groups import ScaleSettings
from core.settings import Settings
from core.training import shared_data
from core.training.studies import open_storage

pytestmark = pytest.mark.integration


def _database(postgres_url: str, name: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.slow
def test_two_families_with_two_workers_per_study_on_a_dask_cluster_and_postgresql(
    tmp_path: Path, demo_csv: Path, prefect_api: str, postgres_url: str
) -> None:
    from distributed import Client, LocalCluster

    from flows.train import train

    storage_url = _database(postgres_url, "optuna_scale_out")
    common: dict[str, Any] = {
        "families": ("logistic_regression", "linear_svm"),
        # The families' four starting points: both runners try the same configurations, so
        # their champions should match (a fifth, sampled trial happens when both loops finish
        # at the same instant).
        "trials": 4,
        "timeout_s": 120,
        "label_audit": False,
        "profile": "fast",
        "max_concurrent_studies": 2,
    }
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        client = Client(cluster)
        workers = client.run(os.getpid)
        # Both workers import the task code before the flow starts, so both loops of a study
        # start within a trial of each other.
        client.run(lambda: bool(importlib.import_module("tasks.scale")))
        on_dask = Settings(
            home=tmp_path / "dask",
            scale=ScaleSettings(
                task_runner="dask",
                dask_address=cluster.scheduler_address,
                optuna_storage=storage_url,
                workers_per_study=2,
            ),
            **common,
        )
        state = train(settings=on_dask, data_path=str(demo_csv), return_state=True)
        summary = state.result()
        loads = client.run(lambda: list(shared_data.LOADS))
        client.close()
    finally:
        cluster.close()
    threads = Settings(home=tmp_path / "threads", **common)
    on_threads = train(settings=threads, data_path=str(demo_csv))

    storage = open_storage(storage_url)
    assert storage is not None
    run_id = str(state.state_details.flow_run_id)
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    for family in common["families"]:
        name = f"tickets-{run_id}-{family}"
        assert name in studies, sorted(studies)
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert common["trials"] <= len(trials) <= common["trials"] + 1
        # Every trial says where it ran; one study's trials came from both worker processes.
        pids = {trial.user_attrs["pid"] for trial in trials}
        assert pids == set(workers.values()), (pids, workers)
        assert all(trial.user_attrs["host"] for trial in trials)
    # The table travelled once per worker (by its fingerprint in the store), not once per task.
    for worker, fingerprints in loads.items():
        assert len(fingerprints) == len(set(fingerprints)) == 1, (worker, fingerprints)
    assert {row.family for row in summary.leaderboard} == set(common["families"])
    assert summary.promoted
    # Same data, same seed, the same configurations tried: the champions score alike.
    assert abs(summary.test_macro_f1 - on_threads.test_macro_f1) <= 0.02, (
        summary.test_macro_f1,
        on_threads.test_macro_f1,
    )


def test_a_local_dask_cluster_serves_no_dashboard(prefect_api: str) -> None:
    """It was off, yet the scheduler listened on 127.0.0.1:8787 with the dashboard's pages."""
    import socket
    import urllib.error
    import urllib.request

    from prefect import flow, task

    from core.setting_groups import ScaleSettings
    from core.settings import Settings
    from tasks.scale import task_runner

    @task
    def dashboard_link() -> str:
        from distributed import get_client

        return str(get_client().dashboard_link)

    def served(url: str) -> bool:
        try:
            urllib.request.urlopen(url, timeout=5)
        except urllib.error.HTTPError as error:
            return error.code != 404
        except urllib.error.URLError:
            return False
        return True

    @flow
    def probe() -> dict[str, object]:
        settings = Settings(scale=ScaleSettings(task_runner="dask", dask_workers=1))
        with task_runner(settings) as runner:
            link = str(runner.submit(dashboard_link, {}).result())
            base = link.rsplit("/", 1)[0]  # the scheduler's HTTP server, while it runs
            with socket.socket() as sock:
                on_8787 = sock.connect_ex(("127.0.0.1", 8787)) == 0
            pages = [p for p in ("/status", "/metrics", "/health") if served(base + p)]
            return {"on_8787": on_8787, "base": base, "pages": pages}

    seen = probe()
    assert seen["on_8787"] is False, "something listens on 8787"
    assert seen["pages"] == [], f"the scheduler's HTTP server at {seen['base']} served them"
