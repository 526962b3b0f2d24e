"""A lean closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next
request when the previous answer arrived. Raw asyncio streams keep the client's own CPU cost low,
which matters when client and server share two cores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

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
    url: str, path: str, bodies: Sequence[bytes], concurrency: int, seconds: float
) -> LoadResult:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(
            _connection(host, int(port), path, bodies, i * 7, until, latencies, errors)
            for i in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), len(errors), elapsed, np.asarray(latencies))


def run_load(
    url: str, path: str, bodies: Sequence[bytes], concurrency: int, seconds: float
) -> LoadResult:
    """Closed-loop load against ``url + path`` for ``seconds`` with ``concurrency`` connections."""
    return asyncio.run(_run(url, path, bodies, concurrency, seconds))
