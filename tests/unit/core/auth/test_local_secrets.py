"""Secrets kept under home: created once, whole, owner-only, whoever asks first."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from core.auth.local_secrets import local_secret


def test_threads_creating_the_same_secret_at_once_all_read_one_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TICKETS_STUDY_CACHE_KEY", raising=False)
    barrier = threading.Barrier(8)
    values: list[str] = []
    failures: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            values.append(local_secret(tmp_path, "study-cache.key", "TICKETS_STUDY_CACHE_KEY"))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert len(set(values)) == 1 and len(values[0]) >= 24
    path = tmp_path / "study-cache.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["study-cache.key"], "no temporary left"
    monkeypatch.setenv("TICKETS_STUDY_CACHE_KEY", "from-the-environment")
    assert local_secret(tmp_path, "study-cache.key", "TICKETS_STUDY_CACHE_KEY") == (
        "from-the-environment"
    )
