"""Throw-away servers on loopback for tests and benchmarks: a PostgreSQL server (initdb +
pg_ctl) and an S3 server (moto's server mode), each of which can be stopped and started again on
the same port, so faults are injected for real."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployments.stack import free_port


def postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL server on loopback that can be restarted for real."""

    url: str
    data: Path
    pg_ctl: str
    as_postgres: list[str]
    options: str

    def _ctl(self, *action: str) -> None:
        command = [*self.as_postgres, self.pg_ctl, "-D", str(self.data), *action]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._ctl("-o", self.options, "-w", "-l", str(self.data / "log"), "start")

    def restart(self) -> None:
        """``pg_ctl restart`` in fast mode: every connection is cut, then the server returns."""
        self._ctl("-o", self.options, "-m", "fast", "-w", "-l", str(self.data / "log"), "restart")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer | None]:
    """A fresh server for the duration of the block (None when PostgreSQL is not installed). It
    runs as the postgres user when we are root: PostgreSQL refuses to run as root."""
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not initdb or not pg_ctl:
        yield None
        return
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="tickets-pg-"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*as_postgres, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = PostgresServer(
        url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        data=data,
        pg_ctl=pg_ctl,
        as_postgres=as_postgres,
        options=f"-p {port} -h 127.0.0.1 -k {data}",
    )
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class RestartableS3:
    """A moto S3 server on loopback that can be stopped and started again on the same port. Its
    objects live in this process, so they survive a restart, as a real server's disk would."""

    host: str
    port: int
    server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> RestartableS3:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def restartable_s3() -> RestartableS3:
    """A started server on a free loopback port."""
    return RestartableS3("127.0.0.1", 0).start()
