"""Versioned training data: content-addressed snapshots, checked on the way back, found by
model version, kept by retention while a bundle names them; recorded settings put back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.errors import BundleError
from core.io.store import LocalStore
from core.release.bundle import bundle_key, write_bundle
from core.release.manifest import Manifest, MlflowRef
from core.release.retention import snapshots_to_delete
from core.release.snapshots import (
    delete_snapshot,
    find_manifest,
    identical_predictions,
    read_snapshot,
    reproduction_settings,
    stored_snapshots,
    training_settings,
    write_snapshot,
)
from core.settings import Settings


def _rows(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "short_description": [f"no puedo entrar {i + offset}" for i in range(n)],
            "close_notes": [None if i % 3 == 0 else f"clave {i}" for i in range(n)],
            "label": ["acceso" if i % 2 else "red" for i in range(n)],
        }
    )


def test_the_same_table_is_stored_once_under_its_digest_and_read_back_exactly(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    train, test = _rows(20), _rows(6, offset=100)
    ref = write_snapshot(store, train, test)
    assert ref.key == f"datasets/{ref.sha256}.parquet" and (ref.train_rows, ref.test_rows) == (
        20,
        6,
    )
    assert set(ref.columns) == {"split", "short_description", "close_notes", "label"}
    assert write_snapshot(store, train.copy(), test.copy()) == ref
    assert len(store.list("datasets/")) == 2, "one Parquet file and its description"
    back_train, back_test = read_snapshot(store, ref)
    assert back_train["short_description"].tolist() == train["short_description"].tolist()
    assert back_train["close_notes"].tolist() == train["close_notes"].fillna("").tolist()
    assert back_test["label"].tolist() == test["label"].tolist()
    other = write_snapshot(store, train.iloc[::-1], test)
    assert other.sha256 != ref.sha256, "row order is part of what a training saw"
    assert {r.sha256 for r in stored_snapshots(store)} == {ref.sha256, other.sha256}


def test_an_altered_or_missing_snapshot_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    ref = write_snapshot(store, _rows(10), _rows(4, 50))
    data = bytearray(store.get(ref.key))
    data[-40] ^= 0xFF
    store.put(ref.key, bytes(data))
    with pytest.raises(BundleError, match="does not match its digest"):
        read_snapshot(store, ref)
    delete_snapshot(store, ref)
    assert store.list("datasets/") == []
    with pytest.raises(BundleError, match="is gone"):
        read_snapshot(store, ref)


def test_a_model_is_found_by_its_version_or_bundle_id(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for bundle_id, version in (("20260101T000000Z-lr-a", "3"), ("20260102T000000Z-lr-b", "4")):
        manifest = Manifest(
            bundle_id=bundle_id, family="lr", mlflow=MlflowRef(model_version=version)
        )
        write_bundle(store, b"model", manifest)
    store.put(bundle_key("20260103T000000Z-lr-c", "model.skops"), b"half written")
    assert find_manifest(store, "4").bundle_id == "20260102T000000Z-lr-b"
    assert find_manifest(store, "20260101T000000Z-lr-a").model_version == "3"
    with pytest.raises(BundleError, match="no stored bundle has model version '9'"):
        find_manifest(store, "9")


def test_the_recorded_training_settings_are_put_back_and_nothing_else() -> None:
    trained = Settings(families=("lightgbm", "linear_svm"), trials=5, seed=11, cv_folds=4)
    recorded = training_settings(trained)
    assert recorded["families"] == ["lightgbm", "linear_svm"] and recorded["seed"] == 11
    assert "home" not in recorded and "admin_api_key" not in recorded
    today = Settings(home=Path("/elsewhere"), trials=1, seed=3)
    again = reproduction_settings(today, {**recorded, "home": "/ignored"})
    assert again.families == ("lightgbm", "linear_svm") and again.trials == 5
    assert (again.seed, again.cv_folds, again.home) == (11, 4, Path("/elsewhere"))


def test_retention_keeps_referenced_and_young_snapshots() -> None:
    snapshots = [("a", "2026-01-01"), ("b", "2026-01-02"), ("c", "2026-03-01"), ("d", "")]
    assert snapshots_to_delete(snapshots, {"b"}, younger_than="2026-02-01") == ["a"]
    assert snapshots_to_delete(snapshots, set(), younger_than="2026-04-01") == ["a", "b", "c"]


def test_identical_predictions_are_counted_position_by_position() -> None:
    assert identical_predictions(["a", "b", "c"], ["a", "c", "c"]) == 2
    with pytest.raises(ValueError):
        identical_predictions(["a"], [])
