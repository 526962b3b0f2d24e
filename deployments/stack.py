"""A full local stack without Docker: a Prefect server on SQLite, the process work pool with its
deployments (prefect.yaml), a process worker, the prediction service and the MLflow UI.

``python -m deployments.stack`` (``make stack``) runs it until Ctrl-C; ``deployments/demo.py``
and the end-to-end test use ``LocalStack`` the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from core.auth.local_secrets import label_key_help, local_secret

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "tickets-process"
#: The deployments of prefect.yaml on the process pool (the kubernetes-* ones deploy from a
#: cluster): what `make deploy`, the compose bootstrap and the stack deploy.
PROCESS_DEPLOYMENTS = ("hourly", "every-six-hours", "daily", "manual", "on-event")


class StackError(RuntimeError):
    """A component did not start or a command failed; the message says which and where to look."""


def http_json(method: str, url: str, body: Any = None, timeout: float = 10) -> Any:
    """A JSON request with the standard library (no extra client needed here)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_until(what: str, check: Any, timeout_s: float, interval_s: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; StackError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            value = check()
            if value:
                return value
        time.sleep(interval_s)
    raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStack:
    """Processes of the stack, their logs under ``<home>/logs``, stopped together."""

    home: Path
    tickets_env: dict[str, str]
    prefect_port: int = 4200
    api_port: int = 8000
    mlflow_port: int | None = 5000
    worker_poll_s: int = 5
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    notifications: str = ""

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        """Environment of every component: TICKETS_* settings plus the Prefect client's."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        links = {
            "TICKETS_DASHBOARD_URL": f"{self.service_url}/dashboard",
            "TICKETS_PREFECT_UI_URL": f"http://127.0.0.1:{self.prefect_port}",
        }
        return {
            **links,  # unless the operator's environment says how the links are reached
            **base,
            **self.tickets_env,
            "TICKETS_HOME": str(self.home),
            "TICKETS_PREFECT_API_URL": self.prefect_api,
            "PREFECT_API_URL": self.prefect_api,
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.worker_poll_s),
            "PREFECT_UI_URL": f"http://127.0.0.1:{self.prefect_port}",
        }

    def _start(self, name: str, command: list[str]) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = (logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, *command: str, timeout_s: float = 300) -> str:
        """Run a command in the stack's environment; its output, or StackError with it."""
        done = subprocess.run(
            list(command),
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def _check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            raise StackError(f"{name} exited with {process.returncode}; see {self.home}/logs")

    def start(self) -> LocalStack:
        self.home.mkdir(parents=True, exist_ok=True)
        prefect = str(BIN / "prefect")
        self._start(
            "prefect-server",
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)],
        )
        # The service needs Prefect only to send events, so it starts while the server boots.
        self._start(
            "service",
            [str(BIN / "tickets"), "serve", "--host", "127.0.0.1", "--port", str(self.api_port)],
        )
        wait_until(
            "the Prefect server", lambda: http_json("GET", f"{self.prefect_api}/health"), 120
        )
        self.deploy()
        self._start("worker", [prefect, "worker", "start", "--pool", POOL, "--type", "process"])
        wait_until(
            "the prediction service", lambda: http_json("GET", f"{self.service_url}/health"), 90
        )
        if self.mlflow_port:
            self._start("mlflow-ui", self._mlflow_command())
        for name in self.processes:
            self._check_alive(name)
        return self

    def deploy(self) -> None:
        """The work pool, the process pool's deployments of prefect.yaml, then the notification
        automations of deployments/automations.yaml (what ``make deploy`` does)."""
        prefect = str(BIN / "prefect")
        self.run(prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        names = [arg for name in PROCESS_DEPLOYMENTS for arg in ("--name", name)]
        self.run(
            prefect, "--no-prompt", "deploy", *names, "--prefect-file", str(ROOT / "prefect.yaml")
        )
        self.notifications = self.run(str(BIN / "python"), "-m", "deployments.notifications")

    def _mlflow_command(self) -> list[str]:
        tracking = self.tickets_env.get("TICKETS_MLFLOW_TRACKING_URI") or (
            f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
        )
        return [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            tracking,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.mlflow_port),
        ]

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.processes.clear()

    def __enter__(self) -> LocalStack:
        """Start everything; what already started is stopped again if a component fails (the
        ``with`` block's exit would not run)."""
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def urls(self) -> dict[str, str]:
        urls = {
            "prefect_ui": f"http://127.0.0.1:{self.prefect_port}",
            "dashboard": f"{self.service_url}/dashboard",
            "api_docs": f"{self.service_url}/schema",
            "api": self.service_url,
        }
        if self.mlflow_port:
            urls["mlflow_ui"] = f"http://127.0.0.1:{self.mlflow_port}"
        return urls


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the stack the way Ctrl-C does (the components are in their own sessions)."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make stack", description=__doc__)
    parser.add_argument("--home", default=os.environ.get("TICKETS_HOME", ".tickets"))
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    args = parser.parse_args(argv)
    home = Path(args.home).resolve()
    env = {k: v for k, v in os.environ.items() if k.startswith("TICKETS_")}
    env["TICKETS_WEBHOOK_SECRETS"] = local_secret(home, "webhook_secret", "TICKETS_WEBHOOK_SECRETS")
    env["TICKETS_LABEL_API_KEYS"] = local_secret(home, "label_api_key", "TICKETS_LABEL_API_KEYS")
    stack = LocalStack(home, env, args.prefect_port, args.api_port, args.mlflow_port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with stack:
            print(json.dumps(stack.urls(), indent=2))
            print(stack.notifications.strip())
            print(f"webhook secret in {home / 'webhook_secret'}; logs in {home / 'logs'}")
            print(label_key_help(stack.service_url, home / "label_api_key"))
            print("Ctrl-C stops everything.", flush=True)
            while all(p.poll() is None for p in stack.processes.values()):
                time.sleep(1)
            print(f"a component exited; see {home / 'logs'}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
