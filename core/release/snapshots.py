"""Versioned training data: the exact table a training used, stored content-addressed.

Every training writes the rows it trained and tested on (base rows plus feedback rows, after
validation, with a ``split`` column) as one Parquet file under ``datasets/<sha256>.parquet``,
beside a small JSON description (rows, schema, when it was first written). The manifest and the
MLflow run name it, so "which rows made model v7?" has an answer, and ``tickets train
--reproduce 7`` can rebuild that model from them with the settings the manifest recorded.

The key is the digest of the Parquet bytes: the same table written twice is the same file (a
retried or reproduced training writes nothing new), and a reader checks the bytes against it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from core.data.tables import LABEL, NOTES, SHORT
from core.encoder import CROSS_CPU_PROBABILITY_BOUND
from core.errors import BundleError
from core.io.store import ArtifactStore
from core.release.manifest import Manifest, SnapshotRef
from core.settings import Settings

PREFIX = "datasets/"
SPLIT = "split"
TRAIN, TEST = "train", "test"
#: The settings that decide what a training on a given table finds; the manifest records them
#: and a reproduction reuses them (everything else, such as where stores live, is today's).
TRAINING_SETTINGS = (
    "language",
    "families",
    "profile",
    "ensemble",
    "cascade",
    "trials",
    "timeout_s",
    "cv_folds",
    "small_table_rows",
    "test_size",
    "seed",
    "max_concurrent_studies",
    "label_audit",
    "exclude_suspected_labels",
)


def snapshot_table(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Both splits in one table, in training order, with the canonical columns as strings."""
    parts = []
    for name, rows in ((TRAIN, train), (TEST, test)):
        part = rows[[SHORT, NOTES, LABEL]].fillna({NOTES: ""}).astype(str)
        parts.append(part.assign(**{SPLIT: name}))
    table = pd.concat(parts, ignore_index=True)
    return table[[SPLIT, SHORT, NOTES, LABEL]]


def to_parquet_bytes(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


def snapshot_key(sha256: str) -> str:
    return f"{PREFIX}{sha256}.parquet"


def description_key(sha256: str) -> str:
    return f"{PREFIX}{sha256}.json"


def write_snapshot(store: ArtifactStore, train: pd.DataFrame, test: pd.DataFrame) -> SnapshotRef:
    """Store the table (once per content) and return its reference. The description is written
    after the data, so one that exists vouches for a complete file."""
    table = snapshot_table(train, test)
    data = to_parquet_bytes(table)
    sha256 = hashlib.sha256(data).hexdigest()
    key = snapshot_key(sha256)
    if store.exists(description_key(sha256)):
        return SnapshotRef.model_validate_json(store.get(description_key(sha256)))
    store.put(key, data)
    ref = SnapshotRef(
        sha256=sha256,
        key=key,
        uri=store.uri(key),
        train_rows=int((table[SPLIT] == TRAIN).sum()),
        test_rows=int((table[SPLIT] == TEST).sum()),
        columns={name: str(dtype) for name, dtype in table.dtypes.items()},
        created_at=datetime.now(UTC).isoformat(),
    )
    store.put(description_key(sha256), ref.model_dump_json(indent=2).encode())
    return ref


def read_snapshot(store: ArtifactStore, ref: SnapshotRef) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) exactly as the training had them; BundleError when the file is gone or
    its bytes are not the ones the digest names."""
    if not store.exists(ref.key):
        raise BundleError(f"training data snapshot {ref.uri} is gone (deleted by retention?)")
    data = store.get(ref.key)
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise BundleError(f"training data snapshot {ref.uri} does not match its digest")
    table = pd.read_parquet(io.BytesIO(data))
    columns = [SHORT, NOTES, LABEL]
    train = table.loc[table[SPLIT] == TRAIN, columns].reset_index(drop=True)
    test = table.loc[table[SPLIT] == TEST, columns].reset_index(drop=True)
    return train, test


def stored_snapshots(store: ArtifactStore) -> list[SnapshotRef]:
    """Every described snapshot in the store."""
    refs = []
    for key in store.list(PREFIX):
        if key.endswith(".json"):
            refs.append(SnapshotRef.model_validate_json(store.get(key)))
    return refs


def delete_snapshot(store: ArtifactStore, ref: SnapshotRef) -> None:
    """The description first: a snapshot without one is never handed out as complete."""
    store.delete(description_key(ref.sha256))
    store.delete(ref.key)


def training_settings(settings: Settings) -> dict[str, Any]:
    """The settings a reproduction needs, as JSON values."""
    dumped = settings.model_dump(mode="json", include=set(TRAINING_SETTINGS))
    return json.loads(json.dumps(dumped))


def reproduction_settings(settings: Settings, recorded: dict[str, Any]) -> Settings:
    """Today's settings (stores, keys, paths) with the recorded training settings put back."""
    known = {name: value for name, value in recorded.items() if name in TRAINING_SETTINGS}
    if "families" in known:
        known["families"] = tuple(known["families"])
    return settings.model_copy(update=known)


def find_manifest(
    store: ArtifactStore, version: str, vouched: Callable[[Manifest], str | None] | None = None
) -> Manifest:
    """The stored bundle's manifest whose model version (or bundle id) is ``version``. With
    ``vouched`` (a manifest's digest as something outside the store recorded it), the stored
    file must have that digest, or none is given: a manifest edited in the store (other
    training settings, another table) would otherwise be reproduced as if it were the model's."""
    from core.release.bundle import MANIFEST_FILE, bundle_key, read_manifest, stored_bundles

    for bundle_id, _ in sorted(stored_bundles(store), key=lambda pair: pair[1], reverse=True):
        try:
            manifest = read_manifest(store, bundle_id)
        except BundleError:
            continue  # being written, or damaged: not one to reproduce
        if version not in (bundle_id, manifest.model_version):
            continue
        if vouched is None:
            return manifest
        digest = vouched(manifest)
        if digest is None:
            raise BundleError(
                f"model {version}: nothing outside the store vouches for its manifest (no "
                "champion pointer named it, no registry version records its digest): it "
                "cannot be reproduced safely"
            )
        data = store.get(bundle_key(bundle_id, MANIFEST_FILE))
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(
                f"model {version}: its {MANIFEST_FILE} does not match the digest recorded for "
                "it (edited in the store?): it will not be reproduced"
            )
        return manifest
    raise BundleError(f"no stored bundle has model version {version!r} (tickets status lists them)")


#: Probabilities a reproduction on the same kind of machine must repeat.
EXACT = 1e-6


@dataclass(frozen=True)
class Reproduction:
    """How a rebuilt model compares with the original on the original's test rows."""

    rows: int
    identical_labels: int
    max_probability_difference: float
    #: EXACT, or ``CROSS_CPU_PROBABILITY_BOUND`` for a model over the sentence encoder, whose
    #: vectors differ in their last bits between processors (core/encoder.py).
    tolerance: float

    @property
    def reproduced(self) -> bool:
        return self.max_probability_difference <= self.tolerance

    def describe(self, version: str | None) -> str:
        verdict = "reproduced" if self.reproduced else "NOT reproduced"
        bound = (
            "exactly"
            if self.tolerance <= EXACT
            else f"within the encoder's cross-CPU bound {self.tolerance:g}"
        )
        return (
            f"reproduction of model {version}: {verdict} ({bound}): {self.identical_labels} of "
            f"{self.rows} test predictions identical, probabilities differ by at most "
            f"{self.max_probability_difference:.2g}"
        )


def compare_reproduction(
    before: np.ndarray,
    before_classes: list[str],
    after: np.ndarray,
    after_classes: list[str],
    encoder: bool,
) -> Reproduction:
    """The original's and the rebuilt model's probabilities on the same rows, compared class by
    class (a rebuilt model that lost a class differs by that class's whole probability)."""
    classes = sorted(set(before_classes) | set(after_classes))
    aligned = []
    for probabilities, names in ((before, before_classes), (after, after_classes)):
        full = np.zeros((probabilities.shape[0], len(classes)))
        full[:, [classes.index(name) for name in names]] = probabilities
        aligned.append(full)
    difference = float(np.abs(aligned[0] - aligned[1]).max()) if len(before) else 0.0
    labels = sum(
        a == b for a, b in zip(aligned[0].argmax(axis=1), aligned[1].argmax(axis=1), strict=True)
    )
    tolerance = CROSS_CPU_PROBABILITY_BOUND if encoder else EXACT
    return Reproduction(len(before), int(labels), difference, tolerance)


def identical_predictions(first: list[str], second: list[str]) -> int:
    """How many positions two label lists agree at (they must be equally long)."""
    if len(first) != len(second):
        raise ValueError("prediction lists of different lengths")
    return sum(a == b for a, b in zip(first, second, strict=True))
