"""Fault benchmark: the real service (``tickets serve --workers 2``, bundles on an S3 server, the
prediction log on PostgreSQL, events to a Prefect server) under a steady load of predictions,
with faults injected one at a time:

- the S3 server stopped for 30 s right after a new champion is promoted;
- a PostgreSQL restart (pg_ctl restart);
- SIGKILL of one worker;
- a garbage champion.json, then a valid pointer;
- the new champion's bundle deleted, then restored;
- the Prefect API down while a signed retrain webhook arrives (the sender retries);
- a flood of 1,000 unauthenticated labels;
- 800 tickets of 10,000 characters with no spaces;
- two clients sending batches whose labels come in opposite orders (both workers commit the
  hourly rollup at once: in batch order this deadlocked PostgreSQL);
- rounds of 40 concurrent drift reports (they used to take the threads predictions need);
- /explain of tickets of 5,000 one-letter words per field on a tree champion, a training killed
  while it promotes, PostgreSQL down two minutes, and the helper processes of a killed worker
  (benchmarks/fault_cases.py says what each must show).

Per fault it prints and saves: requests answered during the fault, unexpected 5xx (a 503 with
Retry-After is the documented answer to our own faults), acknowledged predictions missing from
the log, and seconds from the fault ending until the service serves the expected model again
(ready, right version), deadlocks PostgreSQL counted meanwhile (pg_stat_database), and /predict's
p99 during the fault beside its p99 in the quiet seconds before it. Goal: 0, 0, recovery within
3 poll intervals, no deadlock; for the last two rows also /predict's p99 within 1.5x of quiet and
no 5xx at all on their own requests (a 503 there would be a group the database refused).
Run: ``.venv/bin/python -m benchmarks.faults`` (``make benchmark-faults``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
from pydantic import SecretStr

from benchmarks import fault_cases
from benchmarks.common import RESULTS, save
from benchmarks.load import SteadyLoad
from benchmarks.serving import TEXT, process, train_model
from core.auth.local_secrets import new_api_key, new_webhook_secret
from core.auth.signing import sign
from core.data.simulate import generate_tickets
from core.io.store import CHAMPION_KEY, ArtifactStore, open_store
from core.predlog import open_prediction_log
from core.release.bundle import MODEL_FILE, bundle_key, serialize_model, swap_champion, write_bundle
from core.release.manifest import Manifest, MlflowRef, ReferenceProfile
from core.settings import Settings
from core.training.refit import reference_profile
from deployments.local_servers import RestartableS3, postgres_server, restartable_s3
from deployments.stack import free_port

BIN = Path(sys.executable).parent
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the S3 server's request log


@dataclass
class Bench:
    """Everything a fault needs: the service's URL, the store, the servers, the models."""

    url: str
    settings: Settings
    store: ArtifactStore
    s3: RestartableS3
    pg: Any
    models: dict[str, tuple[bytes, ReferenceProfile]]
    prefect: PrefectServer
    secret: str
    poll_s: float
    released: int = 1
    #: The service's process group (its workers and their helper processes).
    server_pgid: int = 0
    #: The steady load of the fault being run, and its p99 before the fault (a case may read
    #: /predict's latency over a window of its own).
    load: Any = None
    quiet_p99_ms: float | None = None

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/health", timeout=5).json())

    def serves(self, version: str) -> bool:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            ready = httpx.get(f"{self.url}/ready", timeout=5)
            model = ready.json()["model"]
            return ready.status_code == 200 and model["model_version"] == version
        return False

    def promote(self, version: str) -> None:
        """A new champion: a bundle written, then the pointer moved (what promotion does)."""
        model_bytes, profile = self.models[version]
        manifest = Manifest(
            bundle_id=f"bench-{version}",
            family="logistic_regression",
            mlflow=MlflowRef(model_version=version),
            reference_profile=profile,
        )
        stored = write_bundle(self.store, model_bytes, manifest)
        _, token = self.store.read_versioned(CHAMPION_KEY)
        if not swap_champion(self.store, stored, token):
            raise RuntimeError("the champion pointer moved during the benchmark")


class PrefectServer:
    """``prefect server start`` on SQLite in a folder of its own, which can be stopped and
    started again (its database survives)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.child: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"]
        command += ["--port", str(self.port)]
        log = (self.home / "server.log").open("ab")
        self.child = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait("the Prefect server", lambda: httpx.get(f"{self.api}/health", timeout=2).json(), 180)

    def stop(self) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait(timeout=30)
            self.child = None


def wait(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; connection errors count as not yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
            value = check()
            if value:
                return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def served_by_then(bench: Bench, version: str, timeout_s: float = 120) -> float:
    """Seconds until the service is ready and serves ``version``."""
    started = time.monotonic()
    wait(f"the service to serve {version}", lambda: bench.serves(version), timeout_s)
    return time.monotonic() - started


# Each fault returns (seconds to recovery, notes).


def s3_outage_during_promotion(bench: Bench, outage_s: float) -> tuple[float, dict[str, Any]]:
    bench.released += 1
    version = str(bench.released)
    bench.promote(version)
    bench.s3.stop()
    seen_before = bench.serves(version)
    time.sleep(outage_s)
    watch = bench.health()["model_watch"]
    bench.s3.start()
    return served_by_then(bench, version), {
        "outage_s": outage_s,
        "served_before_the_outage": seen_before,
        "watch_during_outage": {
            "consecutive_failures": watch["consecutive_failures"],
            "last_error_kind": watch["last_error_kind"],
        },
    }


def postgresql_restart(bench: Bench, _: float) -> tuple[float, dict[str, Any]]:
    if bench.pg is None:
        return 0.0, {"skipped": "PostgreSQL is not installed here"}
    started = time.monotonic()
    bench.pg.restart()
    restart_s = time.monotonic() - started
    return served_by_then(bench, str(bench.released)), {"restart_s": round(restart_s, 2)}


def worker_sigkill(bench: Bench, _: float) -> tuple[float, dict[str, Any]]:
    pids = {bench.health()["worker_pid"] for _ in range(40)}
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    recovery = served_by_then(bench, str(bench.released))  # the other worker answers meanwhile
    wait("a new worker", lambda: {bench.health()["worker_pid"] for _ in range(20)} - pids, 120)
    return recovery, {
        "workers_before": len(pids),
        "replacement_worker_s": round(time.monotonic() - started, 2),
    }


def garbage_pointer(bench: Bench, _: float) -> tuple[float, dict[str, Any]]:
    bench.store.put(CHAMPION_KEY, b'{"bundle_id": ')
    time.sleep(3 * bench.poll_s)
    kind = bench.health()["model_watch"]["last_error_kind"]
    still = bench.serves(str(bench.released))
    bench.released += 1
    bench.promote(str(bench.released))
    return served_by_then(bench, str(bench.released)), {
        "error_kind_seen": kind,
        "old_model_kept_serving": still,
    }


def bundle_deleted(bench: Bench, _: float) -> tuple[float, dict[str, Any]]:
    bench.released += 1
    version = str(bench.released)
    bench.promote(version)
    key = bundle_key(f"bench-{version}", MODEL_FILE)
    saved = bench.store.get(key)
    bench.store.delete(key)
    time.sleep(3 * bench.poll_s)
    kind = bench.health()["model_watch"]["last_error_kind"]
    bench.store.put(key, saved)
    return served_by_then(bench, version), {"error_kind_seen": kind}


def prefect_down_during_webhook(bench: Bench, _: float) -> tuple[float, dict[str, Any]]:
    body = json.dumps({"reason": "fault benchmark"}).encode()
    webhook_id = f"bench-{time.time_ns()}"

    def deliver() -> httpx.Response:
        headers = {**sign([bench.secret], body, webhook_id), "content-type": "application/json"}
        return httpx.post(f"{bench.url}/webhooks/retrain", content=body, headers=headers)

    bench.prefect.stop()
    refused = [deliver() for _ in range(3)]
    statuses = sorted({r.status_code for r in refused})
    retry_after = all(r.headers.get("retry-after") for r in refused)
    bench.prefect.start()
    started = time.monotonic()
    accepted = wait("the retried webhook", lambda: deliver().status_code == 202, 60, 0.5)
    duplicate = deliver().json().get("duplicate")
    return time.monotonic() - started, {
        "while_down": statuses,
        "retry_after_sent": retry_after,
        "accepted_after": bool(accepted),
        "redelivery_is_duplicate": duplicate,
    }


def unauthenticated_label_flood(bench: Bench, _: float) -> tuple[float, dict[str, Any]]:
    def labelled() -> int:
        with open_prediction_log(bench.settings) as log:
            return int(log.window(limit=None)["true_label"].notna().sum())

    before = labelled()

    def attack(worker: int) -> list[int]:
        with httpx.Client(base_url=bench.url) as http:
            statuses = []
            for i in range(worker, 1000, 8):
                headers = {} if i % 2 else {"X-API-Key": f"guessed-{i:012d}"}
                if i % 3:
                    body = {"request_id": f"r{i}", "true_label": "fraude"}
                    statuses.append(http.post("/feedback", json=body, headers=headers).status_code)
                else:
                    body = {"short_description": "clave", "true_label": "fraude"}
                    statuses.append(http.post("/predict", json=body, headers=headers).status_code)
            return statuses

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for part in pool.map(attack, range(8)) for s in part]
    return 0.0, {
        "sent": len(statuses),
        "refused_401_403": sum(s in (401, 403) for s in statuses),
        "labels_written": labelled() - before,
    }


def long_tickets(bench: Bench, _: float) -> tuple[float, dict[str, Any]]:
    tickets = [
        {"short_description": ("x@" if i % 2 else "<script") + chr(97 + i % 26) * 9990}
        for i in range(800)
    ]

    def send(start: int) -> int:
        batch = {"tickets": tickets[start : start + 50]}
        return httpx.post(f"{bench.url}/predict/batch", json=batch, timeout=120).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(send, range(0, 800, 50)))
    return 0.0, {
        "tickets": len(tickets),
        "answered_200": 50 * statuses.count(200),
        "seconds_for_all": round(time.monotonic() - started, 2),
    }


def opposite_label_orders(bench: Bench, _: float, seconds: float = 15) -> tuple[float, dict]:
    """Two clients, one ticket of each class per batch, one in class order and one reversed,
    ten batches a second each: the two workers' group commits upsert the same hourly rows."""
    examples = generate_tickets(600, "baseline", seed=11).drop_duplicates("label")
    tickets = [
        {"short_description": str(row.short_description), "close_notes": str(row.close_notes)}
        for row in examples.sort_values("label").itertuples()
    ]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        statuses = sum(
            pool.map(_batches, [bench.url] * 2, [tickets] * 2, (False, True), [seconds] * 2),
            Counter(),
        )
    return 0.0, {
        "classes_per_batch": len(tickets),
        "batches": sum(statuses.values()),
        "batch_statuses": dict(statuses),
        "side_5xx": sum(n for status, n in statuses.items() if status >= 500),
    }


def _batches(url: str, tickets: list[dict[str, str]], reverse: bool, seconds: float) -> Counter:
    """One client, in a process of its own (see concurrent_drift_reports): ten batches a second."""
    batch = {"tickets": tickets[::-1] if reverse else tickets}
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            started = time.monotonic()
            statuses[http.post("/predict/batch", json=batch).status_code] += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
    return statuses


def concurrent_drift_reports(bench: Bench, _: float, seconds: float = 20) -> tuple[float, dict]:
    """Every two seconds, 40 drift reports requested at once (anonymous, as anyone may), over
    four windows in turn so that some are computed and not only read from the lane's cache.
    The callers run in a process of their own: in the load generator's process, their threads
    (parsing the reports) held its GIL and the measured /predict latency with it."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        statuses, slowest, rounds, size = pool.submit(_drift_rounds, bench.url, seconds).result()
    return 0.0, {
        "rounds_of_40": rounds,
        "drift_statuses": statuses,
        "report_bytes": size,
        "slowest_drift_answer_s": round(slowest, 2),
        "side_5xx": sum(n for status, n in statuses.items() if status >= 500 and status != 503),
    }


def _drift_rounds(url: str, seconds: float) -> tuple[dict[int, int], float, int, int]:
    windows = ["1h", "2h", "6h", "24h"]
    statuses: Counter[int] = Counter()
    slowest, size = 0.0, 0

    # One client for the 40 threads: a client per call builds an SSL context each time, and
    # that cost (the load generator's, on the service's two cores) dwarfed the service's own.
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=40))

    def one(window: str) -> tuple[int, float, int]:
        started = time.monotonic()
        answer = http.get(f"{url}/monitoring/drift", params={"window": window})
        documented = answer.status_code != 503 or answer.headers.get("retry-after")
        took = time.monotonic() - started
        return (answer.status_code if documented else 599), took, len(answer.content)

    rounds = 0
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(40) as pool:
        while time.monotonic() < deadline:
            started = time.monotonic()
            window = windows[rounds % len(windows)]
            for status, took, length in pool.map(one, [window] * 40):
                statuses[status] += 1
                slowest, size = max(slowest, took), max(size, length)
            rounds += 1
            time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    http.close()
    return dict(statuses), slowest, rounds, size


#: Faults after which /predict must keep its quiet p99 (within 1.5x) and no side request may
#: get a 5xx: nothing failed, only load arrived.
UNDER_LOAD = ("opposite_label_orders", "concurrent_drift_reports")

FAULTS: dict[str, Callable[[Bench, float], tuple[float, dict[str, Any]]]] = {
    "explain_huge_tree_ticket": fault_cases.explain_huge_tree_ticket,
    "sigkill_during_promotion": fault_cases.sigkill_during_promotion,
    "postgresql_down_2_minutes": fault_cases.postgresql_down_2_minutes,
    "worker_sigkill_orphans": fault_cases.worker_sigkill_orphans,
    "s3_outage_during_promotion": s3_outage_during_promotion,
    "postgresql_restart": postgresql_restart,
    "worker_sigkill": worker_sigkill,
    "garbage_pointer": garbage_pointer,
    "bundle_deleted": bundle_deleted,
    "prefect_down_during_webhook": prefect_down_during_webhook,
    "unauthenticated_label_flood": unauthenticated_label_flood,
    "long_tickets": long_tickets,
    "opposite_label_orders": opposite_label_orders,
    "concurrent_drift_reports": concurrent_drift_reports,
}


def lost(bench: Bench, acknowledged: list[str]) -> int:
    with open_prediction_log(bench.settings) as log:
        logged = set(log.window()["request_id"])
    return len(set(acknowledged) - logged)


def _release(rows: int) -> tuple[bytes, ReferenceProfile]:
    """A model and the reference profile a training stores with it (drift needs it)."""
    model, data = train_model("logistic_regression", rows)
    train, test = data.iloc[: rows * 4 // 5], data.iloc[rows * 4 // 5 :]
    probabilities = np.asarray(model.predict_proba(test[TEXT]))
    profile = reference_profile(model, train, test, probabilities, Settings())
    return serialize_model(model), profile


def deadlocks(bench: Bench) -> int | None:
    """Deadlocks PostgreSQL has detected in the log's database so far (None on SQLite)."""
    if bench.pg is None:
        return None
    import psycopg

    for _ in range(30):  # the server may be restarting
        with (
            contextlib.suppress(psycopg.OperationalError),
            psycopg.connect(bench.pg.url, connect_timeout=2) as connection,
        ):
            row = connection.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
            return int(row[0]) if row else 0
        time.sleep(1)
    return None


def run_fault(
    bench: Bench, name: str, outage_s: float, rate: float, quiet_s: float = 10
) -> dict[str, Any]:
    with SteadyLoad(bench.url, clients=4, rate=rate) as load:
        load.answered(50)
        quiet_from = time.perf_counter()
        time.sleep(quiet_s)
        quiet_p99 = load.p99_ms(quiet_from)
        bench.load, bench.quiet_p99_ms = load, quiet_p99
        deadlocks_before = deadlocks(bench)
        started = time.monotonic()
        fault_from = time.perf_counter()
        before = load.snapshot()[0]
        recovery, notes = FAULTS[name](bench, outage_s)
        fault_p99 = load.p99_ms(fault_from)
        time.sleep(1)
        after = load.snapshot()[0]
        seconds = time.monotonic() - started
        deadlocks_after = deadlocks(bench)
    row = {
        "requests": after - before,
        "requests_per_s": round((after - before) / seconds, 1),
        "unexpected_5xx": sum(1 for status, _ in load.unexpected if status >= 500),
        "other_unexpected": sum(1 for status, _ in load.unexpected if status < 500),
        "documented_503": load.statuses[503],
        "transport_errors": load.transport_errors,
        "lost_acknowledged": lost(bench, load.acknowledged),
        "recovery_s": round(recovery, 2),
        "recovery_goal_s": round(notes.pop("recovery_goal_s", 3 * bench.poll_s), 2),
        "deadlocks": (
            deadlocks_after - deadlocks_before
            if deadlocks_after is not None and deadlocks_before is not None
            else None
        ),
        "predict_p99_quiet_ms": quiet_p99,
        "predict_p99_ms": fault_p99,
        **notes,
    }
    print(f"{name}: {row}", flush=True)
    return row


@contextlib.contextmanager
def service(bench_home: Path, env: dict[str, str], workers: int) -> Iterator[tuple[str, int]]:
    """The service's URL and process group."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "tickets"), "serve", "--port", str(port), "--workers", str(workers)]
    with process(command, env, f"{url}/ready", bench_home / "serve.log") as child:
        yield url, os.getpgid(child.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.faults", description=__doc__)
    parser.add_argument("--outage-s", type=float, default=30)
    parser.add_argument("--poll-s", type=float, default=2)
    parser.add_argument("--rate", type=float, default=150, help="steady load, requests/s")
    parser.add_argument("--only", help="comma-separated fault names")
    parser.add_argument(
        "--merge", action="store_true", help="keep the saved rows of faults not run now"
    )
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(FAULTS)
    work = Path(tempfile.mkdtemp(prefix="tickets-faults-"))
    aws = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    os.environ.update({**aws, "AWS_DEFAULT_REGION": "us-east-1"})
    s3 = restartable_s3()
    boto3.client("s3", endpoint_url=s3.endpoint).create_bucket(Bucket="faults")
    prefect = PrefectServer(work / "prefect")
    prefect.home.mkdir(parents=True)
    prefect.start()
    secret = new_webhook_secret()
    models = {str(version): _release(1200 + 100 * version) for version in range(1, 8)}
    results: dict[str, Any] = {}
    try:
        with postgres_server() as pg:
            env = {
                **os.environ,
                "TICKETS_HOME": str(work / "home"),
                "TICKETS_STORE_URL": "s3://faults/models",
                "TICKETS_S3_ENDPOINT_URL": s3.endpoint,
                "TICKETS_S3_CONNECT_TIMEOUT_S": "1",
                "TICKETS_S3_READ_TIMEOUT_S": "3",
                "TICKETS_S3_MAX_ATTEMPTS": "2",
                "TICKETS_MODEL_POLL_S": str(args.poll_s),
                "TICKETS_MODEL_WATCH_MAX_BACKOFF_S": str(2 * args.poll_s),
                "TICKETS_PREDICTION_LOG_URL": pg.url if pg else "",
                "TICKETS_WEBHOOK_SECRETS": secret,
                "TICKETS_PREFECT_API_URL": prefect.api,
                "TICKETS_LABEL_API_KEYS": new_api_key(),
                **(
                    {"TICKETS_MONITORING_ISOLATION": os.environ["BENCH_ISOLATION"]}
                    if "BENCH_ISOLATION" in os.environ
                    else {}
                ),
            }
            settings = Settings(
                home=work / "home",
                store_url="s3://faults/models",
                s3_endpoint_url=s3.endpoint,
                prediction_log_url=pg.url if pg else None,
                webhook_secrets=(SecretStr(secret),),
            )
            bench = Bench(
                "", settings, open_store(settings), s3, pg, models, prefect, secret, args.poll_s
            )
            bench.promote("1")
            with service(work, env, workers=2) as (url, pgid):
                bench.url, bench.server_pgid = url, pgid
                for name in chosen:
                    results[name] = run_fault(bench, name, args.outage_s, args.rate)
    finally:
        prefect.stop()
        s3.stop()
    if args.merge and (RESULTS / "faults.json").exists():
        saved = json.loads((RESULTS / "faults.json").read_text()).get("faults", {})
        results = {**{k: v for k, v in saved.items() if k not in results}, **results}
    under_load = [results[name] for name in UNDER_LOAD if name in results]
    goals = {
        "no_lost_acknowledged": all(r["lost_acknowledged"] == 0 for r in results.values()),
        "no_unexpected_5xx": all(r["unexpected_5xx"] == 0 for r in results.values()),
        "recovery_within_3_polls": all(
            r["recovery_s"] <= r["recovery_goal_s"] for r in results.values()
        ),
        "no_deadlocks": all(not r["deadlocks"] for r in results.values()),
        "hardening_cases_met": all(r.get("met", True) for r in results.values()),
        "under_load_no_5xx_at_all": all(
            r["side_5xx"] == 0 and r["documented_503"] == 0 for r in under_load
        ),
        "under_load_predict_p99_within_1_5x_quiet": all(
            r["predict_p99_ms"] is not None
            and r["predict_p99_quiet_ms"]
            and r["predict_p99_ms"] <= 1.5 * r["predict_p99_quiet_ms"]
            for r in under_load
        ),
    }
    save(
        "faults",
        {
            "setup": {
                "workers": 2,
                "steady_load_requests_per_s": args.rate,
                "model_poll_s": args.poll_s,
                "outage_s": args.outage_s,
                "prediction_log": "postgresql" if results and bench.pg else "sqlite",
            },
            "faults": results,
            "goals": goals,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
