"""A temporary Prefect server that dies with the command that started it.

A ``tickets`` command that runs a flow with no Prefect server configured needs one for the run.
Prefect's own temporary server is stopped by an ``atexit`` hook, which a command killed with
SIGKILL (or by Prefect's own SIGTERM handling, which ends the process by the signal) never runs:
every such command left a Prefect server of about 300 MB running for good, and, sharing its
output, kept a caller reading that output waiting forever. This one watches its parent: when
the command's process is gone, it stops itself within a second, whatever killed the command.

``python -m flows.prefect_server --port N`` is the server's own process; commands use
``temporary_prefect_api()``, which does nothing when ``PREFECT_API_URL`` names a server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

#: Seconds the server may take to answer its health check (first start migrates its database).
START_TIMEOUT_S = 90.0
#: How often the server checks that the command that started it still runs.
WATCH_S = 0.5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:  # loopback only
            return int(answer.status) == 200
    except OSError:
        return False


@contextlib.contextmanager
def temporary_prefect_api() -> Iterator[str | None]:
    """The configured Prefect API, or a temporary server's for the block's duration (stopped at
    its end, and by itself if this process dies first)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured)
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    environment = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = [sys.executable, "-m", "flows.prefect_server", "--port", str(port)]
    server = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if server.poll() is not None:
                raise RuntimeError(f"the temporary Prefect server exited ({server.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the temporary Prefect server did not start in {START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.2)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _watch_parent(parent: int) -> None:
    """Stop this process once ``parent`` is gone (it is then re-parented)."""
    while os.getppid() == parent:
        time.sleep(WATCH_S)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flows.prefect_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        log_level="error",
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
