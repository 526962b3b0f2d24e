"""Committed bundles, written once by tests/fixtures/make_golden_bundles.py, still load and give
the same predictions. Bundles store the import path of every class in them, so this is what
fails when a saved class moves or changes its state: such a change needs an alias, an allow-list
entry, or a deliberate new format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.encoder import CROSS_CPU_PROBABILITY_BOUND, CROSS_CPU_VECTOR_BOUND, prepared
from core.io.store import LocalStore
from core.models import lean_predict_proba
from core.release.bundle import load_bundle, read_champion, swap_champion
from core.release.manifest import Manifest
from core.training.features import (
    DEFAULT_TEXT,
    ENCODER_MAX_WORDS,
    ENCODER_PREFIX,
    build_normalizer,
)

GOLDEN = Path(__file__).resolve().parents[3] / "fixtures" / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))
ROOT = Path(__file__).resolve().parents[4]


def tolerance(manifest: Manifest) -> float:
    """Exact for TF-IDF models; a model over the sentence encoder gets the encoder's measured
    cross-CPU bound, since the engine's vectors differ in their last bits between processors
    (core/encoder.py; benchmarks/cross_cpu.py measures it)."""
    return CROSS_CPU_PROBABILITY_BOUND if manifest.encoder else 1e-6


@pytest.mark.parametrize("bundle_id", sorted(EXPECTED["bundles"]))
def test_a_golden_bundle_still_loads_and_predicts_the_same(bundle_id: str) -> None:
    model, manifest = load_bundle(LocalStore(GOLDEN), bundle_id)
    expected = EXPECTED["bundles"][bundle_id]
    tickets = pd.DataFrame(EXPECTED["tickets"])
    assert [str(label) for label in model.classes_] == expected["classes"] == manifest.labels
    wanted = np.asarray(expected["probabilities"])
    atol = tolerance(manifest)
    np.testing.assert_allclose(model.predict_proba(tickets), wanted, atol=atol)
    rows = tickets.to_numpy(dtype=object)
    np.testing.assert_allclose(lean_predict_proba(model, rows), wanted, atol=atol)


ENCODER_BUNDLE = "golden-logistic-regression-encoder"
CROSS_CPU = GOLDEN / "cross_cpu"


@pytest.mark.parametrize("path", ["native", "exact_rsqrt"])
def test_the_encoder_bundle_holds_on_either_processors_vectors(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The golden tickets' vectors as the engine gave them where the bundle was made (AMD EPYC)
    and with an exact 1/sqrt instead of the processor's estimate (the engine under qemu, which
    differs from it more than an Intel Xeon was seen to): either way the bundle's probabilities
    stay within the bound, and this processor's own vectors are within the vector bound of both."""
    import core.encoder as encoder

    model, manifest = load_bundle(LocalStore(GOLDEN), ENCODER_BUNDLE)
    assert manifest.encoder is not None
    tickets = pd.DataFrame(EXPECTED["tickets"])
    documents = build_normalizer(DEFAULT_TEXT, "spanish").transform(tickets)
    texts = [prepared(str(d), ENCODER_MAX_WORDS) for d in documents]
    vectors = np.load(CROSS_CPU / f"{path}.npy")
    assert vectors.shape == (len(texts), encoder.DIMENSIONS)
    here = encoder.encode(texts, ENCODER_PREFIX, ENCODER_MAX_WORDS)
    assert np.abs(here - vectors).max() <= CROSS_CPU_VECTOR_BOUND
    cache = encoder.EmbeddingCache()
    monkeypatch.setattr(encoder, "CACHE", cache)
    namespace = encoder.cache_namespace(ENCODER_PREFIX, ENCODER_MAX_WORDS)
    cache.store({encoder.cache_key(namespace, t): v for t, v in zip(texts, vectors, strict=True)})
    before = encoder.COUNTS.embedded
    probabilities = model.predict_proba(tickets)
    assert encoder.COUNTS.embedded == before, "the model used the given vectors"
    wanted = np.asarray(EXPECTED["bundles"][ENCODER_BUNDLE]["probabilities"])
    np.testing.assert_allclose(probabilities, wanted, atol=CROSS_CPU_PROBABILITY_BOUND)
    margin = np.sort(wanted, axis=1)[:, -1] - np.sort(wanted, axis=1)[:, -2]
    clear = margin > 2 * CROSS_CPU_PROBABILITY_BOUND
    assert (probabilities.argmax(axis=1) == wanted.argmax(axis=1))[clear].all()


def test_the_golden_bundles_hold_every_class_of_ours_that_a_bundle_can() -> None:
    """If a new class of ours becomes savable, it needs a golden bundle too."""
    import skops.io as sio

    from core.release.bundle import ALLOWED_TYPES

    ours = {name for name in ALLOWED_TYPES if name.startswith("core.")}
    seen: set[str] = set()
    for bundle_id in EXPECTED["bundles"]:
        data = (GOLDEN / "bundles" / bundle_id / "model.skops").read_bytes()
        seen |= set(sio.get_untrusted_types(data=data))
    assert ours <= seen, f"no golden bundle holds {sorted(ours - seen)}"


def test_serving_loads_a_bundle_and_answers_without_importing_optuna(tmp_path: Path) -> None:
    """The service imports the saved classes, never the search spaces (which need Optuna)."""
    store_root = tmp_path / "store"
    shutil.copytree(GOLDEN, store_root)
    store = LocalStore(store_root)
    _, manifest = load_bundle(store, "golden-linear-svm")
    assert swap_champion(store, manifest, read_champion(store)[1])
    script = f"""
import sys
from litestar.testing import TestClient
from core.settings import Settings
from serving.app import create_app
settings = Settings(home={str(tmp_path / "home")!r}, store_url={store.url!r})
with TestClient(create_app(settings)) as client:
    answer = client.post("/predict", json={{"short_description": "olvidé mi contraseña"}})
    assert answer.status_code == 200, answer.text
print(sorted(name for name in ("optuna", "prefect", "mlflow") if name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
