from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.errors import StoreError
from core.io.store import LocalStore, open_store
from core.settings import Settings


def test_put_get_exists_and_uri(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("a/b.json", b"{}")
    assert store.get("a/b.json") == b"{}"
    assert store.exists("a/b.json") and not store.exists("a/c.json")
    assert store.uri("a/b.json").startswith("file://")
    with pytest.raises(StoreError, match="does not exist"):
        store.get("a/c.json")


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="escapes"):
        LocalStore(tmp_path / "s").put("../evil", b"x")


def test_compare_and_put_rejects_a_stale_version(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert store.compare_and_put("p.json", b"1", None)
    assert not store.compare_and_put("p.json", b"2", None)
    _, token = store.read_versioned("p.json")
    assert store.compare_and_put("p.json", b"3", token)
    assert not store.compare_and_put("p.json", b"4", token)
    assert store.get("p.json") == b"3"


def test_racing_writers_exactly_one_wins(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("p.json", b"0")
    _, token = store.read_versioned("p.json")
    wins: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda i=i: wins.append(store.compare_and_put("p.json", str(i).encode(), token))
        )
        for i in range(1, 9)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1


def test_open_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store(Settings(home=tmp_path)), LocalStore)
    with pytest.raises(StoreError, match="unsupported"):
        open_store(Settings(store_url="ftp://x/y"))
