"""Serving benchmark, the service pinned to one core and the load tool to the other: on one
trained model, in-process throughput (batches of 100, on the server's core), then for each HTTP
server (uvicorn, granian) the service's /predict at 16 connections and /predict/batch (100
tickets a request), with requests/s, p50/p99, errors and the server's CPU microseconds per
request; for the default server also /explain and /predict with a shadow challenger scoring every
ticket; and ``mlflow models serve`` on the same model, measured the same way. The load tool is
``wrk`` (Debian's package) where installed, else the Python generator of benchmarks/load.py (the
results say which). Prints and saves benchmarks/results/serving.json.
Run: ``.venv/bin/python -m benchmarks.serving``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import save
from benchmarks.load import run_load
from core.data.simulate import generate_tickets
from core.encoder import manifest_entry
from core.io.store import open_store
from core.release.bundle import read_champion, serialize_model, swap_champion, write_bundle
from core.release.manifest import Manifest
from core.release.rollout import start_challenger, stop_challenger
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from core.training.features import ENCODER_MAX_WORDS, ENCODER_PREFIX
from deployments.stack import wait_until
from tests.integration.conftest import free_port

TEXT = ["short_description", "close_notes"]
BIN = Path(sys.executable).parent
TARGET_P99_MS = 20.0
TARGET_SINGLE_SHARE = 0.4
TARGET_BATCH_SHARE = 0.8
TARGET_PEER_RATIO = 15.0
TARGET_SHADOW_P99_RATIO = 1.3
TARGET_EXPLAIN_P99_MS = 50.0


def train_model(
    family: str, rows: int, embedding_weight: float = 0.0, seed: int = 1
) -> tuple[Any, pd.DataFrame]:
    data = generate_tickets(rows, "baseline", seed=seed)
    params = {**default_params(family), "embedding_weight": embedding_weight}
    model = build_pipeline(family, params, "spanish", seed=0)
    model.fit(data[TEXT], data["label"].to_numpy(dtype=object))
    return model, data


def publish(
    settings: Settings,
    model: Any,
    bundle_id: str = "bench",
    champion: bool = True,
    encoder: bool = False,
) -> None:
    """The model as the champion's bundle; ``encoder``: it runs the sentence encoder (the
    manifest says so, as training's does, and the service scores it off the event loop)."""
    store = open_store(settings)
    entry = manifest_entry(ENCODER_PREFIX, ENCODER_MAX_WORDS) if encoder else None
    manifest = write_bundle(
        store,
        serialize_model(model),
        Manifest(bundle_id=bundle_id, family="bench", encoder=entry),
    )
    if champion:
        _, token = read_champion(store)
        swap_champion(store, manifest, token)


def shadow_loaded(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:  # loopback
        challenger = json.loads(response.read())["challenger"]
    return bool(challenger and challenger["model"] and challenger.get("mode") == "shadow")


def in_process(model: Any, tickets: pd.DataFrame) -> dict[str, float]:
    """Tickets per second through predict_proba in batches of 100, and one ticket's latency."""
    model.predict_proba(tickets[TEXT].head(100))
    started = time.perf_counter()
    for start in range(0, len(tickets), 100):
        model.predict_proba(tickets[TEXT].iloc[start : start + 100])
    batch_rate = len(tickets) / (time.perf_counter() - started)
    singles = []
    for i in range(200):
        one = time.perf_counter()
        model.predict_proba(tickets[TEXT].iloc[i : i + 1])
        singles.append((time.perf_counter() - one) * 1000)
    return {
        "batch100_tickets_per_s": round(batch_rate, 1),
        "single_p50_ms": round(float(np.median(singles)), 3),
    }


@contextlib.contextmanager
def process(
    command: list[str], env: dict[str, str], ready_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        child = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(f"{command[0]} at {ready_url}", lambda: _up(ready_url, child, log), 180)
            yield child
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=30)


def _up(url: str, child: subprocess.Popen[bytes], log: Path) -> bool:
    if child.poll() is not None:
        raise RuntimeError(f"exited with {child.returncode}: {log.read_text()[-2000:]}")
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:  # loopback
        return int(response.status) == 200


def log_mlflow_model(model: Any, home: Path, example: pd.DataFrame) -> tuple[str, str]:
    import mlflow
    import mlflow.sklearn

    from core.release.bundle import ALLOWED_TYPES

    tracking = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("bench", artifact_location=(home / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=sorted(ALLOWED_TYPES),
            input_example=example,
        )
    return tracking, str(info.model_uri)


def shadow_counts(url: str) -> dict[str, float]:
    """The shadow's outcomes from the service's own counters (scored, dropped, failed)."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # loopback
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tickets_shadow_tickets_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


def bodies_for(tickets: pd.DataFrame) -> dict[str, list[bytes]]:
    records = tickets[TEXT].to_dict("records")
    return {
        "predict": [json.dumps(r).encode() for r in records],
        "batch": [
            json.dumps({"tickets": records[i : i + 100]}).encode()
            for i in range(0, len(records) - 99, 100)
        ],
        "mlflow": [json.dumps({"dataframe_records": [r]}).encode() for r in records],
    }


SERVER_CORE, LOAD_CORE = 1, 0


def pinned(core: int) -> list[str]:
    """``taskset -c core`` where taskset and that core exist; else nothing (not pinned)."""
    if shutil.which("taskset") and core < (os.cpu_count() or 1):
        return ["taskset", "-c", str(core)]
    return []


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes of one process group (the server:
    supervisor, worker and the worker's lane process)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(pgid: int, timeout_s: float = 180) -> None:
    """Wait until the server is idle (its monitoring lane's process has finished importing):
    what it does at start-up must not be billed to the load."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = group_cpu_s(pgid)
        time.sleep(1)
        if group_cpu_s(pgid) - before < 0.05:
            return


class Load:
    """The load tool: ``wrk`` pinned to its own core (benchmarks/wrk/post.lua posts the bodies
    in turn), or, where wrk is not installed, the Python generator of benchmarks/load.py."""

    def __init__(self, bodies_dir: Path, connections: int, seconds: float) -> None:
        self.dir = bodies_dir
        self.connections = connections
        self.seconds = seconds
        self.wrk = shutil.which("wrk")
        self.tool = (
            f"wrk {_wrk_version()} (1 thread, pinned to core {LOAD_CORE})"
            if self.wrk
            else "benchmarks/load.py (asyncio keep-alive; wrk not installed)"
        )

    def run(
        self,
        url: str,
        path: str,
        name: str,
        pgid: int | None = None,
        items: int = 1,
        connections: int | None = None,
        seconds: float | None = None,
    ) -> dict[str, float]:
        connections = connections or self.connections
        seconds = seconds or self.seconds
        before = group_cpu_s(pgid) if pgid else 0.0
        if self.wrk:
            result = self._wrk(url, path, name, connections, seconds)
        else:
            bodies = (self.dir / f"{name}.jsonl").read_bytes().splitlines()
            result = run_load(url, path, bodies, connections, seconds).summary(items)
        if pgid:
            cpu_s = group_cpu_s(pgid) - before
            result["server_cpu_us_per_request"] = round(cpu_s / max(result["requests"], 1) * 1e6)
            result["server_cpu_share"] = round(cpu_s / result["seconds"], 3)
        result["items_per_s"] = round(result["requests_per_s"] * items, 1)
        result["connections"] = connections
        return result

    def _wrk(
        self, url: str, path: str, name: str, connections: int, seconds: float
    ) -> dict[str, float]:
        command = [*pinned(LOAD_CORE), str(self.wrk), "-t1", f"-c{connections}"]
        command += [f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url]
        command += ["--", str(self.dir / f"{name}.jsonl"), path]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        raw = json.loads(output.strip().splitlines()[-1])
        duration = raw["duration_us"] / 1e6
        errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors"))
        errors += raw["status_errors"] + raw["timeouts"]
        return {
            "requests": raw["requests"],
            "errors": errors,
            "seconds": round(duration, 2),
            "requests_per_s": round(raw["requests"] / duration, 1),
            "p50_ms": round(raw["p50_us"] / 1000, 2),
            "p90_ms": round(raw["p90_us"] / 1000, 2),
            "p99_ms": round(raw["p99_us"] / 1000, 2),
        }


WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"


def _wrk_version() -> str:
    found = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    words = (found.stdout + found.stderr).split()
    return words[1] if len(words) > 1 else "?"


def write_bodies(directory: Path, bodies: dict[str, list[bytes]]) -> None:
    for name, items in bodies.items():
        (directory / f"{name}.jsonl").write_bytes(b"\n".join(items) + b"\n")


def in_process_pinned(model: Any, tickets: pd.DataFrame) -> dict[str, float]:
    """``in_process`` on the server's core, as the service would run."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) <= SERVER_CORE:
        return in_process(model, tickets)
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        return in_process(model, tickets)
    finally:
        os.sched_setaffinity(0, allowed)


def serve_phases(
    server: str, env: dict[str, str], home: Path, load: Load, settings: Settings, full: bool
) -> dict[str, Any]:
    """One server pinned to its core: /predict and /predict/batch; with ``full``, also /explain
    and /predict with a shadow challenger scoring every ticket."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*pinned(SERVER_CORE), str(BIN / "tickets"), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--server", server]
    results: dict[str, Any] = {}
    with process(command, env, f"{url}/ready", home / f"serve-{server}.log") as child:
        pgid = os.getpgid(child.pid)
        settle(pgid)
        load.run(url, "/predict", "predict", seconds=3)
        results["predict"] = load.run(url, "/predict", "predict", pgid)
        print(f"{server} /predict: {results['predict']}", flush=True)
        load.run(url, "/predict/batch", "batch", items=100, seconds=3)
        results["batch"] = load.run(url, "/predict/batch", "batch", pgid, 100)
        print(f"{server} /predict/batch: {results['batch']}", flush=True)
        if not full:
            return results
        load.run(url, "/explain", "predict", seconds=3)
        results["explain"] = load.run(url, "/explain", "predict", pgid)
        print(f"{server} /explain: {results['explain']}", flush=True)
        start_challenger(open_store(settings), "bench-challenger", "shadow")
        wait_until("the shadow loaded", lambda: shadow_loaded(url), 60)
        settle(pgid)
        load.run(url, "/predict", "predict", seconds=3)
        results["predict_with_shadow"] = load.run(url, "/predict", "predict", pgid)
        results["shadow_scored"] = shadow_counts(url)
        stop_challenger(open_store(settings), "benchmark done")
        print(f"{server} /predict with a shadow: {results['predict_with_shadow']}", flush=True)
    return results


def mlflow_phase(
    model: Any, data: pd.DataFrame, env: dict[str, str], home: Path, load: Load
) -> dict[str, float]:
    tracking, model_uri = log_mlflow_model(model, home, data[TEXT].head(2))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    peer = [*pinned(SERVER_CORE), str(BIN / "mlflow"), "models", "serve", "-m", model_uri]
    peer += ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "--workers", "1"]
    peer_env = {**env, "MLFLOW_TRACKING_URI": tracking}
    with process(peer, peer_env, f"{url}/ping", home / "mlflow.log") as child:
        pgid = os.getpgid(child.pid)
        settle(pgid)
        load.run(url, "/invocations", "mlflow", seconds=3)
        result = load.run(url, "/invocations", "mlflow", pgid)
    print(f"mlflow models serve: {result}", flush=True)
    return result


def _target(value: float, target: float, met: bool) -> dict[str, Any]:
    return {"value": value, "target": target, "met": bool(met)}


def targets(results: dict[str, Any], default: str) -> dict[str, Any]:
    ours = results["servers"][default]
    single, batch = ours["predict"], ours["batch"]
    local = results["in_process"]["batch100_tickets_per_s"]
    peer = results["mlflow_serve_predict"]["requests_per_s"]
    share = single["requests_per_s"] / batch["items_per_s"]
    found = {
        "predict_vs_batch_tickets": _target(round(share, 3), TARGET_SINGLE_SHARE, share >= 0.4),
        "predict_p99_ms": _target(single["p99_ms"], TARGET_P99_MS, single["p99_ms"] <= 20),
        "predict_errors": _target(single["errors"], 0, single["errors"] == 0),
        "predict_vs_mlflow": _target(
            round(single["requests_per_s"] / peer, 2) if peer else 0.0,
            TARGET_PEER_RATIO,
            bool(peer) and single["requests_per_s"] >= TARGET_PEER_RATIO * peer,
        ),
        "batch_vs_in_process": _target(
            round(batch["items_per_s"] / local, 3),
            TARGET_BATCH_SHARE,
            batch["items_per_s"] >= TARGET_BATCH_SHARE * local,
        ),
    }
    if "predict_with_shadow" in ours:
        shadowed, explained = ours["predict_with_shadow"], ours["explain"]
        ratio = shadowed["p99_ms"] / single["p99_ms"]
        found["shadow_p99_ratio"] = _target(
            round(ratio, 2), TARGET_SHADOW_P99_RATIO, ratio <= TARGET_SHADOW_P99_RATIO
        )
        found["explain_p99_ms"] = _target(
            explained["p99_ms"], TARGET_EXPLAIN_P99_MS, explained["p99_ms"] < TARGET_EXPLAIN_P99_MS
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serving", description=__doc__)
    parser.add_argument("--family", default="logistic_regression")
    parser.add_argument("--rows", type=int, default=3000, help="training tickets")
    parser.add_argument("--seconds", type=float, default=15, help="per load phase")
    parser.add_argument("--clients", type=int, default=16, help="connections on /predict")
    parser.add_argument(
        "--servers",
        default="uvicorn,granian",
        help="HTTP servers to compare; the first is the "
        "default of `tickets serve`, measured with /explain and a shadow too",
    )
    parser.add_argument(
        "--embedding-weight",
        type=float,
        default=0.0,
        help="add the static token-embedding block (linear families); saves serving_embedding.json",
    )
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="tickets-bench-"))
    settings = Settings(home=home)
    model, data = train_model(args.family, args.rows, args.embedding_weight)
    publish(settings, model)
    challenger, _ = train_model(args.family, args.rows // 2, args.embedding_weight, seed=3)
    publish(settings, challenger, "bench-challenger", champion=False)
    tickets = generate_tickets(2000, "baseline", seed=2)
    local = in_process_pinned(model, tickets)
    print(f"in-process (core {SERVER_CORE}): {local}", flush=True)
    write_bodies(home, bodies_for(tickets))
    load = Load(home, args.clients, args.seconds)
    env = {
        **os.environ,
        "TICKETS_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    servers = args.servers.split(",")
    results: dict[str, Any] = {"in_process": local, "servers": {}}
    for index, server in enumerate(servers):
        results["servers"][server] = serve_phases(
            server, env, home, load, settings, full=index == 0
        )
    results["mlflow_serve_predict"] = mlflow_phase(model, data, env, home, load)
    results["targets"] = targets(results, servers[0])
    results["setup"] = {
        "family": args.family,
        "embedding_weight": args.embedding_weight,
        "training_rows": args.rows,
        "predict_connections": args.clients,
        "batch_connections": args.clients,
        "tickets_per_batch_request": 100,
        "seconds_per_phase": args.seconds,
        "workers": 1,
        "default_server": servers[0],
        "load_tool": load.tool,
        "server_core": SERVER_CORE if pinned(SERVER_CORE) else None,
        "cpu": _cpu_model(),
    }
    for name, target in results["targets"].items():
        print(f"{name}: {target}")
    save("serving_embedding" if args.embedding_weight else "serving", results)
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
