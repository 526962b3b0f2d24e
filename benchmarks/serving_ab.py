"""What a change costs the service: `/predict` at 16 clients, this checkout against a git revision.

One run of each is noise on a shared machine (p99 moved 16-23 ms between identical runs here),
so the two services take turns, several rounds, on the same bundle and the same tickets; the
result is each side's median. The other revision runs from a temporary `git worktree` on this
checkout's `.venv` (its dependencies must match). Saves benchmarks/results/serving_ab.json.

    python -m benchmarks.serving_ab --base 7c105b2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, save
from benchmarks.load import run_load
from benchmarks.serving import BIN, bodies_for, process, publish, train_model
from core.data.simulate import generate_tickets
from core.settings import Settings
from tests.integration.conftest import free_port

TARGET_P99_RATIO = 1.10


def serve_command(root: Path, port: int) -> list[str]:
    """`tickets serve` with the code under `root` first on the path."""
    start = f"import sys; sys.path.insert(0, {str(root)!r}); from flows.cli import main; main()"
    return [str(BIN / "python"), "-c", start, "serve", "--host", "127.0.0.1", "--port", str(port)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serving_ab", description=__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10, help="per load phase")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    base = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="tickets-serving-ab-"))
    tree = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", str(tree), base], check=True)
    try:
        settings = Settings(home=work / "home")
        model, _ = train_model("logistic_regression", 5000)
        publish(settings, model)
        bodies = bodies_for(generate_tickets(2000, "baseline", seed=2))["predict"]
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "this": []}
        for round_ in range(args.rounds):
            for side, root in (("base", tree), ("this", ROOT)):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                env = {**os.environ, "TICKETS_HOME": str(settings.home), "PYTHONPATH": str(root)}
                log = work / f"{side}-{round_}.log"
                with process(serve_command(root, port), env, f"{url}/ready", log):
                    run_load(url, "/predict", bodies, args.clients, 2)  # warm-up
                    summary = run_load(url, "/predict", bodies, args.clients, args.seconds)
                runs[side].append(summary.summary())
                print(f"round {round_} {side}: {runs[side][-1]}", flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
    median = {
        side: {
            key: round(statistics.median(run[key] for run in side_runs), 2)
            for key in ("requests_per_s", "p50_ms", "p99_ms")
        }
        for side, side_runs in runs.items()
    }
    ratio = median["this"]["p99_ms"] / median["base"]["p99_ms"]
    result = {
        "base": base,
        "this": head,
        "clients": args.clients,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "median": median,
        "runs": runs,
        "targets": {
            "p99_ratio": round(ratio, 3),
            "throughput_ratio": round(
                median["this"]["requests_per_s"] / median["base"]["requests_per_s"], 3
            ),
            "p99_within_10_percent": ratio <= TARGET_P99_RATIO,
        },
    }
    save("serving_ab", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
