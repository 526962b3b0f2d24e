"""The ``tickets`` command line. Prefect is imported only by the commands that run flows."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from pydantic import ValidationError

from core.errors import ConfigurationError, TicketsError
from core.setting_groups import HttpServer, flat_name
from core.settings import Settings, get_settings
from flows import cli_desk, cli_rollout
from flows.prefect_server import temporary_prefect_api

if TYPE_CHECKING:
    from core.training.refit import TrainingSummary

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="tune seven families, keep the best, promote it")
    train.add_argument("--data", help="training table (CSV/Parquet, path or s3://)")
    train.add_argument("--test-data", help="labelled test table instead of a split")
    train.add_argument("--text-columns", help="comma-separated, first is the short description")
    train.add_argument("--label-column")
    train.add_argument("--encoding", help="encoding of a CSV/JSON Lines file (default: detected)")
    train.add_argument("--families", help="comma-separated subset of the seven families")
    train.add_argument("--trials", type=int, help="Optuna trials per study")
    train.add_argument("--timeout-s", type=float, help="time budget per study, seconds")
    train.add_argument(
        "--profile",
        choices=["standard", "fast", "accurate"],
        help="standard (default): the linear families may add the multilingual sentence "
        "encoder where cross-validation says it helps; fast: TF-IDF only, for high volume "
        "(accurate: the old name of standard)",
    )
    train.add_argument("--json", action="store_true", help="end with one JSON summary line")
    train.add_argument(
        "--reproduce",
        metavar="VERSION",
        help="retrain model VERSION from its stored table and settings; compare, never promote",
    )
    # `tickets run`'s background training: the marker saying it is still owed, removed on success.
    train.add_argument("--done-marker", help=argparse.SUPPRESS)

    simulate = commands.add_parser("simulate", help="write Spanish demo tickets")
    simulate.add_argument("--n", type=int, default=5000)
    simulate.add_argument("--scenario", default="baseline")
    simulate.add_argument("--seed", type=int, default=42)
    simulate.add_argument("--out", required=True, help="output .csv or .parquet")

    run = commands.add_parser(
        "run", help="the main job: demo data if none, train if no champion, then serve"
    )
    run.add_argument("--json", action="store_true")
    run.add_argument("--no-serve", action="store_true", help="stop after training")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)

    serve = commands.add_parser("serve", help="serve the champion over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--server",
        choices=get_args(HttpServer),
        help="the HTTP server (default: TICKETS_SERVER, else uvicorn)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every HTTP request to stderr (off by default: the prediction log already "
        "records every prediction, and a line per request costs about a tenth of the "
        "service's throughput)",
    )
    cli_rollout.add_commands(commands)
    cli_desk.add_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "text_columns": getattr(args, "text_columns", None),
        "label_column": getattr(args, "label_column", None),
        "data_encoding": getattr(args, "encoding", None),
        "families": getattr(args, "families", None),
        "trials": getattr(args, "trials", None),
        "timeout_s": getattr(args, "timeout_s", None),
        "profile": getattr(args, "profile", None),
    }
    base = get_settings()
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**{**base.model_dump(exclude_unset=True), **given})


def _print_summary(summary: TrainingSummary) -> None:
    print("\nLeaderboard (cross-validated macro-F1 on the training split, +/- standard error):")
    for row in summary.leaderboard:
        score = "failed" if row.cv_macro_f1 is None else f"{row.cv_macro_f1:.4f}"
        spread = f"+/- {row.cv_std_error:.4f}" if row.cv_std_error is not None else ""
        print(
            f"  {row.family:<20} {score:>8} {spread:<10} {row.cv_folds:>2} folds "
            f"{row.trials:>3} trials  {row.fit_seconds:>7.1f}s"
        )
    if summary.selection:
        print(f"Selected: {summary.selection}")
    print(
        f"\nChampion candidate: {summary.champion_family}  test macro-F1 "
        f"{summary.test_macro_f1:.4f}  weighted F1 {summary.test_weighted_f1:.4f}  "
        f"accuracy {summary.test_accuracy:.4f}"
    )
    print(f"Model version {summary.model_version}; bundle {summary.bundle_uri}")
    print(f"Promoted: {summary.promoted} ({summary.promotion_reason})")


def _train(settings: Settings, data: str, test_data: str | None, as_json: bool) -> int:
    from core.data.tables import load_training_data

    load_training_data(settings, data, test_data)  # fail fast, before Prefect starts
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.progress import study_progress
    from flows.train import train

    with temporary_prefect_api(), study_progress(settings.families, settings.trials):
        summary = train(settings=settings, data_path=data, test_data_path=test_data)
    _print_summary(summary)
    if as_json:
        print(json.dumps(summary.as_json()))
    return 0


def _reproduce(settings: Settings, version: str, as_json: bool) -> int:
    from core.io.store import open_store
    from core.release.registry import manifest_voucher
    from core.release.snapshots import find_manifest

    store = open_store(settings)
    find_manifest(store, version, manifest_voucher(settings, store))  # fail fast, in one line
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.train import train

    with temporary_prefect_api():
        summary = train(settings=settings, reproduce=version)
    _print_summary(summary)
    if as_json:
        print(json.dumps(summary.as_json()))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from core.data.simulate import generate_tickets

    frame = generate_tickets(args.n, args.scenario, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} tickets ({args.scenario}) to {out}")
    return 0


#: The first model ``tickets run`` trains when there is none: the two linear families, which
#: train in seconds and are usually the best on text, on their default settings and the fast
#: profile (no sentence encoder to run over every ticket first), so a newcomer gets an answer in
#: a couple of minutes; the full training, with the encoder, then runs in the background.
QUICK_FAMILIES = ("linear_svm", "logistic_regression")
QUICK_TRIALS = 1


def _run_data(settings: Settings) -> str:
    """The training table: ``data_path``, else demo tickets generated once under ``home``."""
    if settings.data_path:
        return settings.data_path
    path = settings.default_data_path()
    if not path.exists():
        from core.data.simulate import generate_tickets

        path.parent.mkdir(parents=True, exist_ok=True)
        frame = generate_tickets(settings.demo_rows, "baseline", settings.seed)
        frame.to_csv(path, index=False)
        print(f"generated {settings.demo_rows} demo tickets at {path}")
    return str(path)


def _phase(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from core.io.store import open_store
    from core.release.bundle import champion_bundle_id

    background: subprocess.Popen[bytes] | None = None
    owed = _owed_full_training(settings)
    if champion_bundle_id(open_store(settings)) is not None:
        print(f"a champion exists in {settings.artifact_store_url()}; skipping training")
        if owed is not None and not args.no_serve:
            print("the full training of an earlier `tickets run` was interrupted: resuming it")
            background = _train_in_background(settings, owed)
    elif args.no_serve or set(settings.families) <= set(QUICK_FAMILIES):
        _train(settings, _run_data(settings), None, args.json)
    else:
        data = _run_data(settings)
        _phase(
            f"phase 1 of 2: a quick first model ({' and '.join(QUICK_FAMILIES)}, "
            f"{QUICK_TRIALS} trials each)"
        )
        # The quick model is replaced by the full one within minutes: its label audit (three
        # more fits) would only delay the first answer; the full training audits.
        quick = settings.model_copy(
            update={
                "families": QUICK_FAMILIES,
                "trials": QUICK_TRIALS,
                "label_audit": False,
                "profile": "fast",
            }
        )
        _train(quick, data, None, args.json)
        background = _train_in_background(settings, data)
    if args.no_serve:
        return 0
    if not settings.label_api_keys:
        from core.auth.local_secrets import label_key_help, local_secret

        key_file = settings.home / "label_api_key"
        os.environ["TICKETS_LABEL_API_KEYS"] = local_secret(
            settings.home, key_file.name, "TICKETS_LABEL_API_KEYS"
        )
        print(label_key_help(f"http://{args.host}:{args.port}", key_file.resolve()))
    # uvicorn re-raises the SIGTERM it stopped on once it is done; without a handler of ours that
    # kills the process before the cleanup below, leaving the background training running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _serve(settings, args.host, args.port, 1)
    finally:
        if background is not None:
            _stop(background)


def _stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace_s``: a training flow takes SIGTERM
    as a crash but still waits for the studies' threads to finish, which can take minutes (a
    killed training resumes from its finished studies next time)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _owed_marker(settings: Settings) -> Path:
    return settings.home / "full-training.pending"


def _owed_full_training(settings: Settings) -> str | None:
    """The data of a background full training that started and never finished (Ctrl-C, a
    reboot), or None."""
    marker = _owed_marker(settings)
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["data"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        marker.unlink(missing_ok=True)  # unreadable: nothing to resume
        return None


def _train_in_background(settings: Settings, data: str) -> subprocess.Popen[bytes]:
    """Phase 2: every configured family with the full search, in a process of its own; its model
    replaces the quick one only if it beats it under the usual promotion rule. A marker under
    ``home`` says it is owed until it succeeds, so a ``tickets run`` after an interruption
    resumes it (its finished studies come from the study cache)."""
    log = settings.home / "logs" / "full-training.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    marker = _owed_marker(settings)
    marker.write_text(json.dumps({"data": data}), encoding="utf-8")
    command = [str(Path(sys.executable).with_name("tickets")), "train", "--data", data]
    command += ["--done-marker", str(marker)]
    families = ", ".join(settings.families)
    _phase(
        f"phase 2 of 2: training {len(settings.families)} families ({families}) in the "
        f"background, log in {log.resolve()}; the service swaps to that model by itself only if "
        "it beats the quick one"
    )
    with log.open("ab") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def _serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    access_log: bool = False,
    server: HttpServer | None = None,
) -> int:
    from serving.launch import metrics_directory, run_server

    metrics_directory(settings.home, port, workers)
    base = f"http://{host}:{port}"
    chosen = server or settings.serving.server
    _phase(f"serving on {base} ({chosen})  API docs: {base}/schema  dashboard: {base}/dashboard")
    sys.stdout.flush()
    run_server(chosen, host, port, workers, access_log)
    return 0


#: Mistakes in what a person typed or pointed at, reported like the project's own errors.
USER_MISTAKES: tuple[type[BaseException], ...] = (
    TicketsError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        settings = _settings(args)  # a bad setting (a weak key, say) stops here, in one line
        if args.command == "serve":
            return _serve(
                settings, args.host, args.port, args.workers, args.access_log, args.server
            )
        if args.command == "run":
            return _run(settings, args)
        if args.command in cli_rollout.COMMANDS:
            return cli_rollout.run(settings, args)
        if args.command in cli_desk.COMMANDS:
            return cli_desk.run(settings, args)
        if args.reproduce:
            return _reproduce(settings, args.reproduce, args.json)
        data = args.data or settings.data_path
        if not data:
            raise ConfigurationError("no training data: pass --data or set TICKETS_DATA_PATH")
        status = _train(settings, data, args.test_data, args.json)
        if args.done_marker:
            Path(args.done_marker).unlink(missing_ok=True)
        return status
    except ValidationError as exc:
        problems = "; ".join(f"{flat_name(e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid setting: {problems}", file=sys.stderr)
    except USER_MISTAKES as exc:
        print(f"error: {exc}", file=sys.stderr)
    # Anything else is a bug: it propagates with its traceback and Python exits with 1.
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
