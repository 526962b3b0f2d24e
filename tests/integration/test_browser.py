"""The dashboard and the API docs in a real headless Chromium (Debian's ``chromium``, driven by
Playwright through ``executable_path``; no browser is downloaded), against the service over HTTP
with a few thousand logged predictions and two monitor reports: every chart has points, the pages
log no console error and make no request outside the origin. A screenshot of the dashboard is
saved in ``test-results/``."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.predlog import PredictionLog, PredictionRecord
from core.records import PromotionRecord
from core.release.bundle import read_champion, serialize_model, swap_champion, write_bundle
from core.release.manifest import Manifest, MlflowRef
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from core.training.refit import reference_profile
from serving.app import create_app
from tests.integration.conftest import running

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-results"
TEXT = ["short_description", "close_notes"]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _champion(settings: Settings, frame: pd.DataFrame) -> Manifest:
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    model.fit(frame[TEXT], frame["label"].to_numpy(dtype=object))
    manifest = Manifest(
        bundle_id="dash",
        family="linear_svm",
        labels=[str(label) for label in model.classes_],
        metrics={"test_macro_f1": 0.88},
        mlflow=MlflowRef(model_version="4"),
        reference_profile=reference_profile(
            model, frame, frame, model.predict_proba(frame[TEXT]), settings
        ),
    )
    store = open_store(settings)
    stored = write_bundle(store, serialize_model(model), manifest)
    assert swap_champion(store, stored, read_champion(store)[1])
    return stored


def _history(settings: Settings, manifest: Manifest) -> None:
    """Four thousand predictions over six days (a fifth with feedback), two monitor reports
    (the second fired), two promotion decisions; labels with accents and eñes included."""
    rng = random.Random(5)
    now = datetime.now(UTC)
    labels = manifest.labels
    records = []
    for i in range(4000):
        label = rng.choice(labels)
        truth = None
        if i % 5 == 0:
            truth = label if rng.random() < 0.85 else rng.choice([*labels, "categoría_nueva"])
        created = (now - timedelta(hours=rng.uniform(0, 140))).isoformat()
        confidence = rng.betavariate(5, 2)
        records.append(
            PredictionRecord(f"r{i}", "4", "contraseña", "", label, confidence, {}, truth, created)
        )
    log = PredictionLog(settings.predictions_path())
    log.record(records)
    for hours_ago, fired in ((30, False), (2, True)):
        tests = [
            {
                "name": name,
                "statistic": value + (0.3 if fired and name == "vocabulary_js" else 0.0),
                "threshold": threshold,
                "p_value": 0.2,
                "verdict": "drift" if fired and name == "vocabulary_js" else "no drift",
            }
            for name, threshold, value in (
                ("text_length_ks", 0.1, 0.04),
                ("vocabulary_js", 0.05, 0.01),
                ("low_confidence_share", 0.3, 0.12),
            )
        ]
        report = {
            "drift_detected": fired,
            "drift_score": 0.33 if fired else 0.0,
            "tests": tests,
            "fired": ["vocabulary_js"] if fired else [],
            "reasons": ["vocabulary_js: tokens nuevos «cripto», «billetera»"] if fired else [],
        }
        at = (now - timedelta(hours=hours_ago)).isoformat()
        log.record_drift_report(at, "4", None, report, "requested" if fired else None)
    for days_ago, version, champion, gain in ((5, "3", None, None), (1, "4", "3", 0.021)):
        log.record_promotion(
            PromotionRecord(
                (now - timedelta(days=days_ago)).isoformat(),
                f"b{version}",
                version,
                f"b{champion}" if champion else None,
                champion,
                0.88,
                0.86 if champion else None,
                gain,
                (0.004, 0.038) if gain else None,
                True,
                "meets the margin and the interval excludes 0" if gain else "no champion yet",
            )
        )
    log.close()


@pytest.fixture(scope="module")
def page_service(
    tmp_path_factory: pytest.TempPathFactory, demo_frame: pd.DataFrame
) -> Iterator[str]:
    settings = Settings(home=tmp_path_factory.mktemp("browser"))
    _history(settings, _champion(settings, demo_frame))
    with running(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium here: install Debian's chromium (.ci/run does) to run this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def _visit(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="networkidle")
    return page, requests, errors


def _same_origin(requests: list[str], origin: str) -> list[str]:
    return [url for url in requests if not url.startswith((origin, "data:", "about:"))]


def test_every_dashboard_chart_has_data_and_nothing_leaves_the_origin(
    page_service: str, browser: Any
) -> None:
    page, requests, errors = _visit(browser, f"{page_service}/dashboard?window=7d")
    charts = [
        "traffic",
        "confidence",
        "mix",
        "feedback",
        "labels",
        "drift-text_length_ks",
        "drift-vocabulary_js",
        "drift-low_confidence_share",
    ]
    for chart in charts:
        points = page.locator(f"section[data-chart='{chart}'] [data-point]").count()
        assert points > 0, f"chart {chart} has no data points"
    assert page.locator("section[data-chart='mix'] [data-point='reference']").count() > 0
    assert page.locator("section[data-chart='drift-vocabulary_js'] circle[r='4']").count() == 1
    assert "tokens nuevos «cripto», «billetera»" in page.content(), "UTF-8 as it is"
    assert "Champions and promotion decisions" in page.content()
    assert page.locator("header a[href='/label']").count() == 1, "the labelling page is linked"
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "dashboard.png"), full_page=True)
    assert errors == [] and _same_origin(requests, page_service) == []
    for window in ("24h", "31d"):
        page.goto(f"{page_service}/dashboard?window={window}", wait_until="networkidle")
        assert page.locator("section[data-chart='traffic'] [data-point]").count() > 0


def test_the_api_docs_work_without_the_internet(page_service: str, browser: Any) -> None:
    page, requests, errors = _visit(browser, f"{page_service}/schema")
    page.wait_for_selector(".opblock", timeout=15_000)
    operations = page.locator(".opblock").count()
    assert operations >= 12, operations
    assert "/predict/batch" in page.locator("#swagger-container").inner_text()
    assert errors == [] and _same_origin(requests, page_service) == []


LABEL_KEY = "label-page-key-of-16+"


@pytest.fixture(scope="module")
def label_service(
    tmp_path_factory: pytest.TempPathFactory, demo_frame: pd.DataFrame
) -> Iterator[tuple[str, Settings]]:
    """A champion, forty logged tickets to label and a label key."""
    settings = Settings(home=tmp_path_factory.mktemp("label"), label_api_keys=(LABEL_KEY,))
    _champion(settings, demo_frame)
    tickets = generate_tickets(40, "baseline", seed=31)
    with running(create_app(settings)) as url:
        bodies = [
            {"short_description": row.short_description, "close_notes": row.close_notes}
            for row in tickets.itertuples()
        ]
        assert httpx.post(f"{url}/predict/batch", json={"tickets": bodies}).status_code == 200
        yield url, settings


def _labelled(settings: Settings) -> dict[str, str]:
    log = PredictionLog(settings.predictions_path())
    try:
        rows = log.window()
    finally:
        log.close()
    labelled = rows[rows["true_label"].notna()]
    return dict(zip(labelled["request_id"], labelled["true_label"], strict=True))


def _until(page: Any, expression: str, timeout_s: float = 30) -> None:
    """Poll ``expression`` in the page (the page's Content-Security-Policy forbids the string
    evaluation ``wait_for_function`` relies on, and the test keeps it on)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def _current(page: Any) -> str:
    return str(page.get_attribute("#ticket", "data-request-id"))


def test_an_agent_labels_five_tickets_with_the_keyboard_and_undoes_one(
    label_service: tuple[str, Settings], browser: Any
) -> None:
    url, settings = label_service
    page, requests, errors = _visit(browser, f"{url}/label")
    assert page.evaluate("document.activeElement.id") == "key", "the key field has the focus"

    page.fill("#key", "not-the-label-key-at-all")
    page.press("#key", "Enter")
    _until(page, "document.getElementById('problem').textContent.length > 0")
    assert "Clave incorrecta" in page.inner_text("#problem")
    assert page.evaluate("sessionStorage.length") == 0 and _labelled(settings) == {}

    page.fill("#key", LABEL_KEY)
    page.press("#key", "Enter")
    page.wait_for_selector("#work:not([hidden])")
    assert page.inner_text("#problem") == ""
    labels = page.eval_on_selector_all("#labels button", "bs => bs.map(b => b.dataset.label)")
    assert len(labels) >= 3 and page.get_attribute("#labels button", "aria-keyshortcuts") == "1"

    expected: dict[str, str] = {}
    skipped = []
    for key in ("Enter", "2", "s", "3", "1", "Enter"):
        ticket = _current(page)
        # The words that pushed the suggestion are in (from /explain), highlighted in the text.
        _until(page, "!document.getElementById('why-title').textContent.includes('…')")
        if key == "Enter":
            assert page.locator("#why li").count() > 0 and page.locator("mark").count() > 0
            expected[ticket] = page.inner_text("#suggested")
        elif key == "s":
            skipped.append(ticket)
        else:
            expected[ticket] = labels[int(key) - 1]
        page.keyboard.press(key)
        _until(page, f"document.getElementById('ticket').dataset.requestId !== {ticket!r}")
    assert page.inner_text("#done") == "5" and len(expected) == 5
    assert _labelled(settings) == expected

    last = list(expected)[-1]
    page.keyboard.press("z")
    _until(page, f"document.getElementById('ticket').dataset.requestId === {last!r}")
    assert page.inner_text("#done") == "4" and "Deshecho" in page.inner_text("#status")
    del expected[last]
    assert _labelled(settings) == expected, "exactly four labels, the chosen categories"
    assert not set(skipped) & set(_labelled(settings))

    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "label.png"), full_page=True)
    # The key is in this tab's sessionStorage only: not in the page, a URL or a cookie.
    assert LABEL_KEY not in page.content() and LABEL_KEY not in page.url
    assert not [u for u in requests if LABEL_KEY in u] and page.context.cookies() == []
    assert _same_origin(requests, url) == []
    # The only console errors are the browser's report of the wrong key's 401.
    assert [e for e in errors if "401" not in e] == [], errors
