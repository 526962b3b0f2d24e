"""Starting the service under an HTTP server: uvicorn (uvloop, httptools; the default, the faster
of the two on one core in the serving benchmark) or granian (its HTTP handling is Rust). Both run
the same app (``serving.app:app_from_environment``) with the same lifespan, one or more worker
processes, and an in-process Prometheus registry unless there are several workers."""

from __future__ import annotations

import os
from pathlib import Path

from core.setting_groups import HttpServer

APP = "serving.app:app_from_environment"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

#: uvicorn kills a worker that misses its health ping, and a replacement cannot answer until it
#: has re-imported the app (spawn); on a loaded machine 5 s (the default) can pass first, and the
#: replacement of a killed worker would be killed in a loop.
WORKER_HEALTHCHECK_S = 30


def metrics_directory(home: Path, port: int, workers: int) -> None:
    """Where several workers keep their Prometheus samples, so /metrics sums all of them. Set
    before any worker imports prometheus-client. One worker keeps the ordinary in-process
    registry: the shared files cost a lock and a write per sample on the request path."""
    if workers == 1:
        os.environ.pop(MULTIPROC_DIR, None)
        return
    directory = (home / "prometheus" / str(port)).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # samples of an earlier run of this service
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_DIR] = str(directory)


def run_server(
    server: HttpServer, host: str, port: int, workers: int, access_log: bool = False
) -> None:
    """Serve until stopped (SIGTERM or SIGINT: the workers finish their lifespan)."""
    if server == "granian":
        _granian(host, port, workers, access_log)
    else:
        _uvicorn(host, port, workers, access_log)


def _granian(host: str, port: int, workers: int, access_log: bool) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        APP,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=workers,
        # A worker killed by the kernel (or by hand) is replaced, as uvicorn's supervisor does.
        respawn_failed_workers=True,
        log_access=access_log,
    ).serve()


def _uvicorn(host: str, port: int, workers: int, access_log: bool) -> None:
    import uvicorn

    uvicorn.run(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )
