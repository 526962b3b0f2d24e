"""A lean closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next
request when the previous answer arrived. Raw asyncio streams keep the client's own CPU cost low,
which matters when client and server share two cores."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray

    def summary(self, items_per_request: int = 1) -> dict[str, float]:
        latencies = self.latencies_ms
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(self.requests / self.seconds, 1),
            "items_per_s": round(self.requests * items_per_request / self.seconds, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else 0.0,
            "p90_ms": round(float(np.percentile(latencies, 90)), 2) if len(latencies) else 0.0,
            "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else 0.0,
        }


def _request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    offset: int,
    until: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    try:
        while time.perf_counter() < until:
            payload = _request(host, port, path, bodies[index % len(bodies)])
            index += 1
            started = time.perf_counter()
            writer.write(payload)
            status = await _read_response(reader)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _run(
    url: str, path: str, bodies: Sequence[bytes], concurrency: int, seconds: float, stride: int
) -> LoadResult:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(
            _connection(host, int(port), path, bodies, i * stride, until, latencies, errors)
            for i in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), len(errors), elapsed, np.asarray(latencies))


def run_load(
    url: str,
    path: str,
    bodies: Sequence[bytes],
    concurrency: int,
    seconds: float,
    stride: int = 7,
) -> LoadResult:
    """Closed-loop load against ``url + path`` for ``seconds`` with ``concurrency`` connections;
    connection i starts at body ``i * stride`` and walks on (a stride of len(bodies) //
    concurrency keeps every body sent once until the connections wrap around)."""
    return asyncio.run(_run(url, path, bodies, concurrency, seconds, stride))


@dataclass
class SteadyLoad:
    """Clients sending /predict at a steady pace (``rate`` requests/s in all) until stopped, in
    threads. An answer is expected when it is a 200, or a 503 that says when to retry;
    everything else is counted as unexpected. Transport errors (connections of a killed worker)
    are counted apart: nothing was acknowledged to those clients. ``rate`` 0 means as fast as
    the service answers."""

    url: str
    clients: int = 4
    rate: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    acknowledged: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    unexpected: list[tuple[int, str]] = field(default_factory=list)
    transport_errors: int = 0
    #: (time the answer arrived, latency in ms) of every 200, for percentiles over a period.
    latencies: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, number: int) -> None:
        import httpx

        pause = self.clients / self.rate if self.rate else 0.0
        with httpx.Client(timeout=10) as http:
            sent = 0
            while not self._stop.is_set():
                started = time.perf_counter()
                sent += 1
                body = {"short_description": f"no puedo ingresar, clave bloqueada {number}-{sent}"}
                try:
                    response = http.post(f"{self.url}/predict", json=body)
                except httpx.TransportError:
                    with self._lock:
                        self.transport_errors += 1
                    time.sleep(0.05)
                    continue
                finished = time.perf_counter()
                with self._lock:
                    self._count(response.status_code, response.headers, response.text)
                    if response.status_code == 200:
                        self.latencies.append((finished, (finished - started) * 1000))
                rest = pause - (time.perf_counter() - started)
                if rest > 0:
                    self._stop.wait(rest)

    def _count(self, status: int, headers: Any, text: str) -> None:
        self.statuses[status] += 1
        if status == 200:
            answer = json.loads(text)
            self.acknowledged.append(answer["request_id"])
            self.versions.add(answer["model_version"])
        elif not (status == 503 and headers.get("retry-after")):
            self.unexpected.append((status, text[:300]))

    def snapshot(self) -> tuple[int, int, int]:
        """(requests answered so far, unexpected answers so far, acknowledged so far)."""
        with self._lock:
            return sum(self.statuses.values()), len(self.unexpected), len(self.acknowledged)

    def p99_ms(self, since: float, until: float | None = None) -> float | None:
        """p99 latency of the 200s answered between two ``time.perf_counter()`` readings."""
        end = time.perf_counter() if until is None else until
        with self._lock:
            window = [ms for at, ms in self.latencies if since <= at <= end]
        return round(float(np.percentile(window, 99)), 2) if window else None

    def answered(self, at_least: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.statuses[200] < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {at_least} predictions answered")
            time.sleep(0.05)

    def __enter__(self) -> SteadyLoad:
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True)
            for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
