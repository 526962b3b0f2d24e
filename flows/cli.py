"""The ``tickets`` command line. Prefect is imported only by the commands that run flows."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from pydantic import ValidationError

from core.errors import ConfigurationError, TicketsError
from core.setting_groups import HttpServer, flat_name
from core.settings import Settings, get_settings
from flows import cli_desk, cli_rollout, cli_train, supervisor

if TYPE_CHECKING:
    pass

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
    run.add_argument("--port", type=int, default=8000, help="the prediction service's port")
    run.add_argument("--prefect-port", type=int, default=4200, help="Prefect's UI and API")
    run.add_argument("--mlflow-port", type=int, default=5000, help="the MLflow UI (0: none)")

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
    supervisor.phase(
        f"serving on {base} ({chosen})  API docs: {base}/schema  dashboard: {base}/dashboard"
    )
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
            return supervisor.run(settings, args)
        if args.command in cli_rollout.COMMANDS:
            return cli_rollout.run(settings, args)
        if args.command in cli_desk.COMMANDS:
            return cli_desk.run(settings, args)
        if args.reproduce:
            return cli_train.reproduce_and_report(settings, args.reproduce, args.json)
        data = args.data or settings.data_path
        if not data:
            raise ConfigurationError("no training data: pass --data or set TICKETS_DATA_PATH")
        status = cli_train.train_and_report(settings, data, args.test_data, args.json)
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
