"""The loop without Docker: a Prefect server on SQLite, the process work pool with its deployments
(prefect.yaml), a process worker, the prediction service and the MLflow UI, as processes of
their own, stopped together.

``tickets run`` (``make run``, flows/supervisor.py) starts it around the first model;
``deployments/demo.py`` and the end-to-end test drive that command.
"""

from __future__ import annotations

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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

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


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 (of any content type)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return bool(response.status == 200)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Every component's environment carries its stack's id under this name, and so does every
#: process they start, whatever session it runs in: what finds them all when the stack stops.
STACK_ID = "TICKETS_STACK_ID"


def processes_of(stack_id: str) -> list[int]:
    """The processes started by the stack ``stack_id``."""
    return processes_with(STACK_ID, stack_id)


def processes_with(variable: str, value: str) -> list[int]:
    """Processes whose environment sets ``variable`` to ``value``, but this one and its
    ancestors (on Linux, where /proc says; elsewhere none are found)."""
    marker = f"{variable}={value}".encode()
    mine = set(_ancestors())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid in mine:
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0") and running(pid):
                found.append(pid)
    return found


def _ancestors() -> list[int]:
    """This process and its parents up to init."""
    chain = [os.getpid()]
    with contextlib.suppress(OSError, ValueError, IndexError):
        while chain[-1] > 1:
            status = Path(f"/proc/{chain[-1]}/status").read_text()
            chain.append(int(status.split("PPid:")[1].split()[0]))
    return chain


def stop_pids(pids: list[int], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to whichever of ``pids`` still runs after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if running(pid)]
            time.sleep(0.2)
        if not pids:
            return


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, parent, group, ...), or
    None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (on Linux)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(entry.name)
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def group_members(pgid: int) -> list[int]:
    """The running processes of process group ``pgid`` (on Linux)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(entry.name)
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@dataclass
class LocalStack:
    """Processes of the stack, their logs under ``<home>/logs``, stopped together."""

    home: Path
    tickets_env: dict[str, str]
    prefect_port: int = 4200
    api_port: int = 8000
    mlflow_port: int | None = 5000
    worker_poll_s: int = 5
    #: Where the service listens (127.0.0.1: this host only).
    host: str = "127.0.0.1"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    notifications: str = ""
    stack_id: str = field(default_factory=lambda: uuid.uuid4().hex)

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
            STACK_ID: self.stack_id,
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

    def start_servers(self) -> None:
        """The Prefect server and the service (which needs Prefect only to send events, so it
        starts while the server boots); returns once the Prefect API answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._start(
            "prefect-server",
            [
                str(BIN / "prefect"),
                *("server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)),
            ],
        )
        self._start(
            "service",
            [str(BIN / "tickets"), "serve", "--host", self.host, "--port", str(self.api_port)],
        )
        wait_until(
            "the Prefect server", lambda: http_json("GET", f"{self.prefect_api}/health"), 120
        )

    def start_loop(self) -> None:
        """The deployments, a worker to run them, the MLflow UI; returns once the service
        answers."""
        self.deploy()
        self._start(
            "worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
        )
        wait_until(
            "the prediction service", lambda: http_json("GET", f"{self.service_url}/health"), 90
        )
        if self.mlflow_port:
            # After the first training, which created its database: two processes creating
            # MLflow's tables at once on SQLite can collide.
            self._start("mlflow-ui", self._mlflow_command())
            wait_until("the MLflow UI", lambda: _answers(f"{self.urls()['mlflow_ui']}/health"), 90)
        for name in self.processes:
            self._check_alive(name)

    def start(self) -> LocalStack:
        self.start_servers()
        self.start_loop()
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
        """SIGTERM to every component's process group, SIGKILL to what is left after 15 s;
        then the same for any process still carrying this stack's id in its environment
        (flow runs that a worker started in sessions of their own)."""
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
        stop_pids(processes_of(self.stack_id))

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
