"""``tickets run`` (``make run``): the whole loop on embedded defaults, stopped by one Ctrl-C.

1. Demo tickets when no data is configured; a quick first model when there is no champion (the
   two linear families, TF-IDF only), so the first answer comes within a minute or two.
2. The loop around it (deployments/stack.py): a Prefect server on loopback (UI and API), the
   process work pool with the deployments of prefect.yaml (``monitor/hourly``,
   ``retrain/on-event`` with its trigger, ``maintenance/daily``, ``train/manual``, ...) served by
   a process worker, the prediction service, the MLflow UI. Each URL is printed.
3. The full training (all configured families, the default profile) in the background,
   reporting to that Prefect server; its model replaces the quick one only if it beats it, and
   the service swaps to it by itself. A marker under ``home`` says it is owed until it
   succeeds, so the next ``tickets run`` after an interruption resumes it.

Ctrl-C (or SIGTERM) stops every process it started: the components run in sessions of their
own and are stopped by process group; a component that dies stops the run, saying where its
log is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from deployments.stack import LocalStack

#: The first model ``tickets run`` trains when there is none: the linear SVM, which trains in
#: seconds and is usually the best on text, on its default settings and the fast profile (no
#: sentence encoder to run over every ticket first), so a newcomer gets an answer within a
#: minute; the full training, with the encoder, then runs in the background. (Logistic
#: regression's liblinear fits took 42 of the 72 s a clean clone waited for its first answer.)
QUICK_FAMILIES = ("linear_svm",)
QUICK_TRIALS = 1


def phase(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run_data(settings: Settings) -> str:
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


def owed_marker(settings: Settings) -> Path:
    return settings.home / "full-training.pending"


def owed_full_training(settings: Settings) -> str | None:
    """The data of a background full training that started and never finished (Ctrl-C, a
    reboot), or None."""
    marker = owed_marker(settings)
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["data"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        marker.unlink(missing_ok=True)  # unreadable: nothing to resume
        return None


def train_in_background(
    settings: Settings, data: str, environment: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """The full training, in a process of its own (``environment``: the stack's, so the run
    shows in its Prefect UI); a marker under ``home`` says it is owed until it succeeds."""
    log = settings.home / "logs" / "full-training.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    marker = owed_marker(settings)
    marker.write_text(json.dumps({"data": data}), encoding="utf-8")
    command = [str(Path(sys.executable).with_name("tickets")), "train", "--data", data]
    command += ["--done-marker", str(marker)]
    families = ", ".join(settings.families)
    phase(
        f"the full training of {len(settings.families)} families ({families}) runs in the "
        f"background, log in {log.resolve()}; the service swaps to its model by itself only if "
        "it beats the quick one"
    )
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environment,
        )


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
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


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the run the way Ctrl-C does."""
    raise KeyboardInterrupt


def has_champion(settings: Settings) -> bool:
    from core.io.store import open_store
    from core.release.bundle import champion_bundle_id

    return champion_bundle_id(open_store(settings)) is not None


def quick_settings(settings: Settings) -> Settings:
    """The first model's settings: the quick families on their defaults, TF-IDF only. It is
    replaced by the full one within minutes, so its label audit (three more fits) and the
    encoder's embedding of every ticket would only delay the first answer."""
    return settings.model_copy(
        update={
            "families": QUICK_FAMILIES,
            "trials": QUICK_TRIALS,
            "label_audit": False,
            "profile": "fast",
        }
    )


def train_only(settings: Settings, data: str, owed: bool, as_json: bool) -> int:
    """``tickets run --no-serve``: the configured training, in the foreground, unless a
    champion exists and no training is owed."""
    from flows.cli_train import train_and_report

    if has_champion(settings) and not owed:
        print(f"a champion exists in {settings.artifact_store_url()}; skipping training")
        return 0
    status = train_and_report(settings, data, None, as_json)
    owed_marker(settings).unlink(missing_ok=True)
    return status


def stack_environment(settings: Settings, data: str) -> dict[str, str]:
    """The ``TICKETS_*`` environment every component of the run gets: this shell's, the data,
    and the local webhook secret and label key (created once under ``home``)."""
    from core.auth.local_secrets import local_secret

    home = settings.home.resolve()
    environment = {k: v for k, v in os.environ.items() if k.startswith("TICKETS_")}
    environment["TICKETS_DATA_PATH"] = data
    # The service looks for the first champion every 2 s (not every 10): it appears moments
    # after the service started.
    environment.setdefault("TICKETS_MODEL_POLL_S", "2")
    environment["TICKETS_WEBHOOK_SECRETS"] = local_secret(
        home, "webhook_secret", "TICKETS_WEBHOOK_SECRETS"
    )
    environment["TICKETS_LABEL_API_KEYS"] = local_secret(
        home, "label_api_key", "TICKETS_LABEL_API_KEYS"
    )
    return environment


def first_model(settings: Settings, data: str, as_json: bool, owed: bool) -> bool:
    """Train what the service answers with first, unless a champion exists; returns whether
    the full training is owed after it (``owed``: one was interrupted before)."""
    if has_champion(settings):
        print(f"a champion exists in {settings.artifact_store_url()}; no training needed")
        return owed
    if set(settings.families) <= set(QUICK_FAMILIES):
        train_and_report(settings, data, as_json)  # quick already: nothing owed after
        owed_marker(settings).unlink(missing_ok=True)
        return False
    phase(
        f"a quick first model ({' and '.join(QUICK_FAMILIES)}, {QUICK_TRIALS} trial "
        "each, TF-IDF only); the service answers as soon as it is published"
    )
    train_and_report(quick_settings(settings), data, as_json)
    return True


def print_urls(stack: LocalStack) -> None:
    """Where everything is, and how to try it."""
    from core.auth.local_secrets import label_key_help

    urls = stack.urls()
    width = max(len(name) for name in urls)
    for name, url in urls.items():
        print(f"  {name.replace('_', ' '):<{width}}  {url}")
    print(f"  {'labelling':<{width}}  {stack.service_url}/label")
    print(stack.notifications.strip())
    print(f"webhook secret in {stack.home / 'webhook_secret'}; logs in {stack.home / 'logs'}")
    print(label_key_help(stack.service_url, stack.home / "label_api_key"))
    print(
        f"try: PREFECT_API_URL={stack.prefect_api} .venv/bin/prefect deployment run monitor/hourly"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``tickets run``: the first model, the service and the loop around it, until Ctrl-C;
    then every process it started is stopped."""
    from deployments.stack import LocalStack, StackError

    owed = owed_full_training(settings)
    data = owed or run_data(settings)
    if args.no_serve:
        return train_only(settings, data, owed is not None, args.json)
    stack = LocalStack(
        settings.home.resolve(),
        stack_environment(settings, data),
        prefect_port=args.prefect_port,
        api_port=args.port,
        mlflow_port=args.mlflow_port or None,
        host=args.host,
    )
    background: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops everything even where this process was started with SIGINT ignored (a
    # shell without job control ignores it in what it starts in the background, and Python
    # then never turns it into KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    phase(f"a Prefect server on {stack.prefect_api} and the service on {stack.service_url}")
    try:
        stack.start_servers()
        # This process's flow runs (the first model) report to that server, as the worker's do.
        os.environ.update({k: v for k, v in stack.env().items() if k.startswith("PREFECT_")})
        owe_full = first_model(settings, data, args.json, owed is not None)
        phase("the loop: the deployments, a worker to run them, the MLflow UI")
        stack.start_loop()
        print_urls(stack)
        if owe_full:
            if owed is not None:
                print("the full training of an earlier run was interrupted: resuming it")
            background = train_in_background(settings, data, stack.env())
        print("Ctrl-C stops everything.", flush=True)
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1)
        stopped = [name for name, p in stack.processes.items() if p.poll() is not None]
        print(f"error: {', '.join(stopped)} stopped; see {stack.home / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping everything", flush=True)
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if background is not None:
            stop(background)
        stack.stop()


def train_and_report(settings: Settings, data: str, as_json: bool) -> None:
    from flows.cli_train import train_and_report as train

    train(settings, data, None, as_json)
