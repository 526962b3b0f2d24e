"""Trying a model on live traffic over real HTTP: a shadow started under load, the shadow's
report against the log, canary routing and stickiness, an automatic canary rollback that reaches
a notification channel, and ``tickets rollback`` served by the next poll."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr
from sklearn.metrics import f1_score

from core.io.store import open_store
from core.predlog import open_prediction_log
from core.release.bundle import read_champion
from core.release.registry import champion_alias
from core.release.rollout import read_challenger, start_challenger
from core.setting_groups import NotifySettings, RolloutSettings, ServingSettings
from core.settings import Settings
from serving.app import create_app
from tests.integration.conftest import (
    TICKETS,
    publish_model,
    publish_profiled_model,
    register_model_version,
    running,
)

pytestmark = pytest.mark.integration
LABEL_KEY = "label-s3cret-of-16-chars"
ADMIN_KEY = "admin-s3cret-of-16-chars"
LABELLED = {"X-API-Key": LABEL_KEY}


def _settings(home: Path, **overrides: Any) -> Settings:
    return Settings(
        home=home,
        serving=ServingSettings(model_poll_s=0.2),
        label_api_keys=(LABEL_KEY,),
        admin_api_key=ADMIN_KEY,
        **overrides,
    )


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _challenger_loaded(url: str, version: str, mode: str) -> Callable[[], bool]:
    def check() -> bool:
        admin = {"X-API-Key": ADMIN_KEY}  # how it is rolled out is for admins only
        body = httpx.get(f"{url}/health", timeout=10, headers=admin).json()["challenger"]
        return (
            bool(body and body["model"] and body["model"]["model_version"] == version)
            and body.get("mode") == mode
        )

    return check


def _log_rows(settings: Settings) -> pd.DataFrame:
    with open_prediction_log(settings) as log:
        return log.window(limit=1_000_000)


def _tickets(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    while True:
        for row in frame.itertuples():
            yield {
                "short_description": row.short_description,
                "close_notes": row.close_notes,
                "true_label": row.label,
            }


@pytest.fixture
def two_models(tmp_path: Path, demo_frame: pd.DataFrame) -> Settings:
    """Champion 1 on every demo ticket; challenger 2 on a third of them (it disagrees often)."""
    settings = _settings(tmp_path / "home")
    publish_model(settings, demo_frame, "b1", "1")
    publish_model(settings, demo_frame.sample(frac=0.25, random_state=3), "b2", "2", champion=False)
    return settings


def test_a_shadow_started_under_load_fails_no_request_and_logs_both_labels(
    two_models: Settings, demo_frame: pd.DataFrame
) -> None:
    settings = two_models
    statuses: list[int] = []
    stop = threading.Event()

    def client(offset: int) -> None:
        tickets = _tickets(demo_frame.iloc[offset::2])
        with httpx.Client(base_url=url, timeout=30, headers=LABELLED) as http:
            while not stop.is_set():
                statuses.append(http.post("/predict", json=next(tickets)).status_code)

    with running(create_app(settings)) as url:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for thread in clients:
            thread.start()
        _wait("traffic before the shadow", lambda: len(statuses) >= 100)
        started_at = pd.Timestamp.now(tz="UTC").isoformat()
        start_challenger(open_store(settings), "2", "shadow")
        _wait("the shadow loaded", _challenger_loaded(url, "2", "shadow"))
        loaded_at = pd.Timestamp.now(tz="UTC").isoformat()
        served_before = len(statuses)
        _wait("traffic with the shadow", lambda: len(statuses) >= served_before + 300)
        stop.set()
        for thread in clients:
            thread.join()

        def all_scored() -> bool:
            rows = _log_rows(settings)
            return bool(rows[rows["created_at"] > loaded_at]["shadow_prediction"].notna().all())

        # The shadow scores in a process of its own at a lower CPU priority: on a loaded machine
        # it lags (what is asserted is that it loses nothing), so it gets minutes, not seconds.
        _wait("the shadow caught up", all_scored, timeout_s=240)
        summary = httpx.get(f"{url}/monitoring/shadow", params={"window": "1h"}).json()

    assert statuses and set(statuses) == {200}, Counter(statuses)
    rows = _log_rows(settings)
    assert len(rows) == len(statuses)
    after = rows[rows["created_at"] > loaded_at]
    assert len(after) >= 250
    assert set(after["shadow_version"]) == {"2"} and set(after["model_version"]) == {"1"}
    assert after["shadow_confidence"].between(0, 1).all()
    shadowed = rows[rows["shadow_prediction"].notna()]
    before = rows[rows["created_at"] < started_at]
    assert len(before) >= 100 and before["shadow_prediction"].isna().all()

    # /monitoring/shadow against the same computation done by hand on the log.
    assert summary["scored"] == len(shadowed)
    agree = shadowed["prediction"] == shadowed["shadow_prediction"]
    assert summary["agreement"] == pytest.approx(agree.mean(), abs=1e-6)
    assert 0 < summary["agreement"] < 1, "two different models: some agreement, not all"
    pairs = Counter(
        zip(shadowed["prediction"][~agree], shadowed["shadow_prediction"][~agree], strict=True)
    )
    top = summary["disagreements"][0]
    assert top["count"] == pairs.most_common(1)[0][1]
    assert pairs[(top["champion_label"], top["shadow_label"])] == top["count"]
    for example in top["examples"]:
        row = shadowed[shadowed["request_id"] == example].iloc[0]
        assert (row["prediction"], row["shadow_prediction"]) == (
            top["champion_label"],
            top["shadow_label"],
        )
    labelled = shadowed[shadowed["true_label"].notna()]
    assert summary["labelled"] == len(labelled) == len(shadowed)
    truth = labelled["true_label"].tolist()
    classes = sorted(set(truth))

    def macro(column: str) -> float:
        return float(f1_score(truth, labelled[column].tolist(), labels=classes, average="macro"))

    assert summary["champion_macro_f1"] == pytest.approx(macro("prediction"), abs=1e-9)
    assert summary["shadow_macro_f1"] == pytest.approx(macro("shadow_prediction"), abs=1e-9)
    low, high = summary["gain_ci"]
    assert low <= summary["gain"] <= high
    assert summary["gain"] < 0, "the challenger saw a quarter of the data: it is worse"
    assert summary["promote"] is False and "below the margin" in summary["reason"]


def test_canary_routing_holds_its_share_and_keeps_each_client_on_one_side(
    two_models: Settings, demo_frame: pd.DataFrame
) -> None:
    settings = two_models
    start_challenger(open_store(settings), "b2", "canary", percent=20)
    routes: dict[str, list[tuple[str, str]]] = {}
    lock = threading.Lock()

    def client(keys: list[str]) -> None:
        ticket = {"short_description": "no puedo entrar a la VPN desde casa"}
        with httpx.Client(base_url=url, timeout=30) as http:
            for key in keys:
                body = http.post("/predict", json=ticket, headers={"X-Client-Key": key}).json()
                with lock:
                    routes.setdefault(key, []).append((body["route"], body["model_version"]))

    with running(create_app(settings)) as url:
        _wait("the canary loaded", _challenger_loaded(url, "2", "canary"))
        keys = [f"cliente-{i}" for i in range(5000)]
        threads = [threading.Thread(target=client, args=(keys[i::4],)) for i in range(4)]
        # Stickiness: 40 clients come back four more times each, interleaved with the rest.
        sticky = [f"agente-{i}" for i in range(40)]
        threads.append(threading.Thread(target=client, args=(sticky * 5,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    share = sum(routes[key][0][0] == "canary" for key in keys) / len(keys) * 100
    assert abs(share - 20) <= 2, share
    for key in keys:
        ((route, version),) = routes[key]
        assert version == ("2" if route == "canary" else "1")
    sides = {key: {route for route, _ in routes[key]} for key in sticky}
    assert all(len(side) == 1 and len(routes[key]) == 5 for key, side in sides.items())
    assert {next(iter(side)) for side in sides.values()} == {"canary", "champion"}
    logged = _log_rows(settings)
    assert Counter(logged["route"]) == Counter(r for rs in routes.values() for r, _ in rs)
    assert (logged[logged["route"] == "canary"]["model_version"] == "2").all()


def test_a_client_choosing_keys_cannot_steer_the_canarys_verdict(
    two_models: Settings, demo_frame: pd.DataFrame
) -> None:
    """The attack that rolled a good canary back: try keys, keep those whose answers came from
    the canary, then send gibberish with them. The canary is judged only on tickets whose side
    the service drew, so the attacker's tickets there stay at the configured share (none of
    its keyed ones count), and anonymous /health does not say a canary runs."""
    from core.monitoring.rollout import judge_canary

    settings = two_models
    start_challenger(open_store(settings), "b2", "canary", percent=10)
    gibberish = {"short_description": "zzq xkcd qwop flrb", "close_notes": "asdf jkl"}
    with running(create_app(settings)) as url:
        _wait("the canary loaded", _challenger_loaded(url, "2", "canary"))
        anonymous = httpx.get(f"{url}/health", timeout=10).json()["challenger"]
        assert "mode" not in anonymous and "percent" not in anonymous
        with httpx.Client(base_url=url, timeout=30) as http:
            tried = {
                key: http.post("/predict", json=gibberish, headers={"X-Client-Key": key}).json()
                for key in (f"probe-{i}" for i in range(300))
            }
            steering = [key for key, answer in tried.items() if answer["route"] == "canary"]
            assert steering, "some keys land on the canary"
            for i in range(260):
                key = steering[i % len(steering)]
                answer = http.post("/predict", json=gibberish, headers={"X-Client-Key": key})
                assert answer.json()["route"] == "canary"  # sticky: the attack does land
            unlabelled = demo_frame[["short_description", "close_notes"]].head(600)
            drawn = [http.post("/predict", json=t).json() for t in unlabelled.to_dict("records")]
    rows = _log_rows(settings)
    attack = rows["short_description"] == gibberish["short_description"]
    assert (rows.loc[attack, "keyed"] == 1).all() and (rows.loc[~attack, "keyed"] == 0).all()
    verdict = judge_canary(rows, "2", settings.rollout, settings.seed)
    judged_canary = sum(answer["route"] == "canary" for answer in drawn)
    assert verdict.canary_rows == judged_canary  # the attacker's 560 keyed tickets are not in it
    assert abs(judged_canary / len(drawn) * 100 - 10) <= 4


def test_a_canary_that_does_worse_is_rolled_back_by_the_monitor_and_announced(
    prefect_api: str, tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    from deployments.notifications import apply
    from flows.monitor import monitor
    from tests.integration.test_notifications import Receiver

    receiver = Receiver()
    settings = _settings(
        tmp_path / "home",
        rollout=RolloutSettings(min_predictions=60, min_feedback=30),
        notify=NotifySettings(webhook_url=SecretStr(f"{receiver.url}/hook")),
    )
    publish_profiled_model(settings, version="3")
    scrambled = demo_frame.assign(
        label=np.random.default_rng(0).permutation(demo_frame["label"].to_numpy())
    )
    publish_model(settings, scrambled, "bad", "4", champion=False)
    apply(settings)
    start_challenger(open_store(settings), "4", "canary", percent=40)
    with running(create_app(settings)) as url:
        _wait("the canary loaded", _challenger_loaded(url, "4", "canary"))
        tickets = _tickets(demo_frame)
        with httpx.Client(base_url=url, timeout=30, headers=LABELLED) as http:
            answered = [http.post("/predict", json=next(tickets)).json() for _ in range(400)]
        assert {a["route"] for a in answered} == {"champion", "canary"}
        result = monitor(settings=settings)
        canary = result["canary"]
        assert canary["rolled_back"] is True, canary
        worse = {check["name"] for check in canary["checks"] if check["worse"]}
        assert "macro-F1 on feedback" in worse, canary["checks"]
        assert any(reason.startswith("canary macro-F1 0.") for reason in canary["reasons"])
        pointer, _ = read_challenger(open_store(settings))
        assert pointer is not None and pointer.mode == "stopped"
        assert pointer.stop_reason is not None and "rolled back" in pointer.stop_reason
        _wait("the service dropped the canary", lambda: _challenger_off(url))
        after = httpx.post(f"{url}/predict", json={"short_description": "impresora"}).json()
        assert (after["route"], after["model_version"]) == ("champion", "3")
    # A second monitor run does not roll it back (or announce it) again.
    assert monitor(settings=settings)["canary"] is None

    def told() -> list[dict[str, Any]]:
        return [b for b in receiver.bodies("/hook") if b["event"] == "tickets.canary.rolled_back"]

    _wait("the webhook message", lambda: bool(told()), timeout_s=90)
    time.sleep(2)  # nothing else about it follows
    (message,) = told()
    assert message["event"] == "tickets.canary.rolled_back"
    assert message["model_version"] == "4" and message["champion_version"] == "3"
    assert message["reasons"] == canary["reasons"]
    with open_prediction_log(settings) as log:
        (record,) = log.promotions("2000-01-01")
    assert (record.kind, record.challenger_version, record.promoted) == (
        "canary-rollback",
        "4",
        False,
    )
    receiver.server.shutdown()


def _challenger_off(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=10).json()["challenger"] is None


def test_tickets_rollback_is_served_by_the_next_poll_and_the_alias_follows(
    prefect_api: str, tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = _settings(tmp_path / "home")
    first, second = register_model_version(settings), register_model_version(settings)
    publish_model(settings, demo_frame, "b1", first)
    publish_model(settings, demo_frame.head(300), "b2", second)
    env = {
        **os.environ,
        "TICKETS_HOME": str(settings.home),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }

    def tickets(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TICKETS, *args], capture_output=True, text=True, env=env, timeout=300
        )

    with running(create_app(settings)) as url:

        def serving(version: str) -> bool:
            body = httpx.post(f"{url}/predict", json={"short_description": "correo"}).json()
            return bool(body["model_version"] == version)

        _wait("the second champion", lambda: serving(second))
        done = tickets("rollback", "--reason", "answers about e-mail went wrong")
        assert done.returncode == 0, done.stderr
        assert f"model {first} is the champion again (was {second})" in done.stdout
        _wait("the old champion served", lambda: serving(first), timeout_s=15)
    pointer, _ = read_champion(open_store(settings))
    assert pointer is not None and pointer.bundle_id == "b1"
    assert champion_alias(settings) == first
    status = tickets("status")
    assert status.returncode == 0, status.stderr
    assert f"champion: model {first}" in status.stdout
    assert f"rolled back to {first}: rollback: answers about e-mail went wrong" in status.stdout
    again = tickets("rollback", "--to", "b9")
    assert again.returncode == 2 and "never the champion" in again.stderr


def test_a_shadow_that_live_labels_show_better_is_promoted_with_the_usual_guarantees(
    prefect_api: str, tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    from flows.rollout import promote_shadow

    settings = _settings(tmp_path / "home", rollout=RolloutSettings(min_feedback=50))
    weak, strong = register_model_version(settings), register_model_version(settings)
    publish_model(settings, demo_frame.sample(frac=0.15, random_state=4), "weak", weak)
    publish_model(settings, demo_frame, "strong", strong, champion=False)
    store = open_store(settings)
    start_challenger(store, strong, "shadow")
    assert promote_shadow(settings=settings)["reason"] == "no ticket scored by both yet"
    with running(create_app(settings)) as url:
        _wait("the shadow loaded", _challenger_loaded(url, strong, "shadow"))
        tickets = _tickets(demo_frame.sample(frac=1.0, random_state=8))
        with httpx.Client(base_url=url, timeout=30, headers=LABELLED) as http:
            for _ in range(400):
                assert http.post("/predict", json=next(tickets)).status_code == 200

        def scored() -> bool:
            return bool(_log_rows(settings)["shadow_prediction"].notna().all())

        _wait("the shadow caught up", scored, timeout_s=240)
        outcome = promote_shadow(settings=settings)
        assert outcome["promoted"] is True, outcome["reason"]
        assert outcome["gain_ci"][0] > 0 and outcome["labelled"] == 400
        _wait("the shadow became the champion", lambda: _served_version(url) == strong)
        assert httpx.get(f"{url}/health").json()["challenger"] is None
    pointer, _ = read_champion(store)
    assert pointer is not None and pointer.bundle_id == "strong"
    assert pointer.decision is not None and pointer.decision.kind == "shadow"
    assert champion_alias(settings) == strong
    stopped, _ = read_challenger(store)
    assert stopped is not None and stopped.stop_reason == "promoted"
    with open_prediction_log(settings) as log:
        (record,) = log.promotions("2000-01-01")
    assert (record.kind, record.challenger_version, record.champion_version) == (
        "shadow",
        strong,
        weak,
    )
    # Run again (the six-hourly pipeline will): nothing left to promote, nothing moves.
    assert promote_shadow(settings=settings) == {
        "promoted": False,
        "reason": "no shadow challenger",
    }


def _served_version(url: str) -> str:
    body = httpx.post(f"{url}/predict", json={"short_description": "correo"}, timeout=30).json()
    return str(body["model_version"])
