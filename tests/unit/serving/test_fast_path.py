"""The fast path for predictions: well-formed requests are answered without Litestar, with the
same answers Litestar gives; anything else reaches Litestar with its body intact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from core.predlog import PredictionLog
from core.setting_groups import ServingSettings
from core.settings import Settings
from serving.app import create_app
from serving.fast_path import fast_predict
from serving.model_holder import ServedModel
from tests.unit.serving.test_app import LABEL_KEY, FakeHolder, golden_model  # noqa: F401

VOLATILE = {"request_id"}


def _clients(
    tmp_path: Path, served: ServedModel | None
) -> Iterator[tuple[TestClient[Any], TestClient[Any]]]:
    limits = ServingSettings(max_text_chars=200, max_batch=5)
    made = []
    for name in ("fast", "litestar"):
        settings = Settings(home=tmp_path / name, serving=limits, label_api_keys=(LABEL_KEY,))
        app = create_app(settings, holder=FakeHolder(served))  # type: ignore[arg-type]
        app.fast_path = name == "fast"
        made.append(TestClient(app))
    with made[0] as fast, made[1] as litestar:
        yield fast, litestar


@pytest.fixture
def both(tmp_path: Path, golden_model: ServedModel) -> Iterator[tuple[TestClient, TestClient]]:  # noqa: F811
    yield from _clients(tmp_path, golden_model)


def _same(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<id>" if k in VOLATILE else _same(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same(v) for v in value]
    return value


REQUESTS: list[tuple[str, Any, dict[str, str]]] = [
    ("/predict", {"short_description": "no puedo entrar al portal"}, {}),
    ("/predict", {"short_description": "impresora", "close_notes": "sin toner"}, {}),
    ("/predict", {"short_description": "vpn caida"}, {"X-Client-Key": "team-7"}),
    ("/predict/batch", {"tickets": [{"short_description": "clave"}, {"close_notes": "x"}]}, {}),
    ("/predict/batch", {"tickets": [{"short_description": "ab"}, {"short_description": "b"}]}, {}),
    ("/predict", {"short_description": ""}, {}),
    ("/predict", {"short_description": "ok", "extra": 1}, {}),
    ("/predict", {"short_description": None}, {}),
    ("/predict", {"short_description": "a" * 201}, {}),
    ("/predict", {"short_description": "ok", "true_label": "red"}, {}),
    ("/predict", {"short_description": "ok", "true_label": "red"}, {"X-API-Key": LABEL_KEY}),
    ("/predict/batch", {"tickets": []}, {}),
    ("/predict/batch", {"tickets": [{"short_description": "x"}] * 6}, {}),
    ("/predict/batch", {"tickets": [{"short_description": "x"}, {"nope": 1}]}, {}),
    ("/predict", [1, 2], {}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "headers"), REQUESTS)
def test_the_fast_path_answers_what_litestar_answers(
    both: tuple[TestClient, TestClient], path: str, body: Any, headers: dict[str, str]
) -> None:
    fast, litestar = both
    ours, theirs = (c.post(path, json=body, headers=headers) for c in (fast, litestar))
    assert ours.status_code == theirs.status_code
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    assert _same(ours.json()) == _same(theirs.json())


def test_a_body_that_is_not_json_and_one_that_is_not_utf8_get_litestars_400(
    both: tuple[TestClient, TestClient],
) -> None:
    fast, litestar = both
    for body in (b"{not json", b'{"short_description": "\xff\xfe"}'):
        ours, theirs = (c.post("/predict", content=body) for c in (fast, litestar))
        assert ours.status_code == theirs.status_code == 400
        assert ours.json() == theirs.json()


def test_without_a_model_both_answer_503_with_retry_after(tmp_path: Path) -> None:
    for fast, litestar in _clients(tmp_path, None):
        ours, theirs = (
            c.post("/predict", json={"short_description": "x"}) for c in (fast, litestar)
        )
        assert ours.status_code == theirs.status_code == 503
        assert ours.headers["retry-after"] == theirs.headers["retry-after"]
        assert ours.json() == theirs.json()


def test_answers_on_the_fast_path_are_logged_before_they_leave(
    both: tuple[TestClient, TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, _ = both

    async def not_litestar(*args: Any) -> None:
        raise AssertionError("a well-formed prediction went through Litestar")

    with monkeypatch.context() as patched:
        patched.setattr(Litestar, "__call__", not_litestar)
        answer = fast.post("/predict/batch", json={"tickets": [{"short_description": "vpn"}] * 3})
    assert answer.status_code == 200
    ids = {p["request_id"] for p in answer.json()["predictions"]}
    logged = set(
        PredictionLog(Settings(home=tmp_path / "fast").predictions_path()).window()["request_id"]
    )
    assert len(ids) == 3 and ids <= logged
    metrics = fast.get("/metrics").text
    assert 'tickets_requests_total{endpoint="/predict/batch",status="200"}' in metrics


class _Recorder:
    def __init__(self) -> None:
        self.called = False
        self.body = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        more = True
        while more:
            message = await receive()
            self.body += message.get("body", b"")
            more = message.get("more_body", False)


def _scope(headers: list[tuple[bytes, bytes]]) -> Any:
    return {"type": "http", "method": "POST", "path": "/predict", "headers": headers}


def _receive(chunks: list[bytes]) -> Any:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


@pytest.mark.parametrize(
    ("headers", "chunks"),
    [
        ([(b"content-length", b"18")], [b'{"short_descr', b'iption": 7}']),  # does not validate
        ([], [b'{"short_description": "x"}']),  # no length: chunked
        ([(b"content-length", b"99999999")], [b"{}"]),  # over the limit
    ],
)
def test_what_the_fast_path_declines_reaches_litestar_with_its_body(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    full = _Recorder()
    state: Any = type("State", (), {"settings": Settings(home=Path("/nonexistent"))})()
    asyncio.run(fast_predict(_scope(headers), _receive(chunks), _noop, state, full))
    assert full.called
    assert full.body == b"".join(chunks)


async def _noop(message: Any) -> None:
    raise AssertionError("the fast path answered a request it should have passed on")
