"""The typed manifest and champion pointer: same JSON on disk, old and newer files still load,
anything that is not a pointer is an error (never "no champion")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from core.errors import BundleError
from core.io.store import CHAMPION_KEY, LocalStore
from core.release.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    bundle_key,
    read_champion,
    swap_champion,
    write_bundle,
)
from core.release.manifest import ChampionPointer, Manifest

GOLDEN = Path(__file__).resolve().parents[3] / "fixtures" / "golden" / "bundles"


def test_a_manifest_written_before_the_types_existed_loads_unchanged() -> None:
    raw = (GOLDEN / "golden-linear-svm" / MANIFEST_FILE).read_bytes()
    manifest = Manifest.from_json(raw, "golden")
    assert manifest.family == "linear_svm" and manifest.bundle_id == "golden-linear-svm"
    assert manifest.files["model.skops"].size > 0
    old, again = json.loads(raw), json.loads(manifest.to_json())
    assert again["mlflow"] == {**old["mlflow"], "model_uri": None}
    assert {key: again[key] for key in old if key != "mlflow"} == {
        key: value for key, value in old.items() if key != "mlflow"
    }
    added = {
        "encoder",
        "cascade",
        "top_terms",
        "data_snapshot",
        "training_settings",
        "suspected_labels",
    }
    assert set(again) - set(old) == {"reference_profile", "suspected_labels_excluded", *added}
    assert again["reference_profile"] is None and again["suspected_labels_excluded"] is False
    assert all(again[key] is None for key in added)


def test_a_minimal_old_manifest_gets_defaults_and_keeps_unknown_keys() -> None:
    old = {"bundle_id": "b1", "family": "svm", "metrics": {"test_macro_f1": 0.8}, "mlflow": {}}
    manifest = Manifest.from_json(json.dumps({**old, "from_the_future": [1, 2]}).encode(), "x")
    assert manifest.model_version == "b1" and manifest.test_macro_f1 == 0.8
    assert manifest.reference_profile is None and manifest.labels == []
    assert json.loads(manifest.to_json())["from_the_future"] == [1, 2]


@pytest.mark.parametrize("body", [b"", b"{", b"null", b"1", b"[]", b"{}", b'{"bundle_id": ""}'])
def test_anything_but_a_pointer_is_a_bundle_error(tmp_path: Path, body: bytes) -> None:
    store = LocalStore(tmp_path)
    store.put(CHAMPION_KEY, body)
    with pytest.raises(BundleError, match="champion pointer"):
        read_champion(store)


def test_the_pointer_digest_is_that_of_the_stored_manifest_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    stored = write_bundle(store, b"model bytes", Manifest(bundle_id="b1", family="svm"))
    assert swap_champion(store, stored, None)
    pointer, _ = read_champion(store)
    assert isinstance(pointer, ChampionPointer) and pointer.bundle_id == "b1"
    on_disk = store.get(bundle_key("b1", MANIFEST_FILE))
    assert pointer.manifest_file_sha256 == hashlib.sha256(on_disk).hexdigest()


def test_the_pointer_never_names_a_bundle_whose_model_file_is_missing_or_altered(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    first = write_bundle(store, b"first model", Manifest(bundle_id="b1", family="svm"))
    assert swap_champion(store, first, None)
    _, token = read_champion(store)
    stored = write_bundle(store, b"model bytes", Manifest(bundle_id="b2", family="svm"))
    store.delete(bundle_key("b2", MODEL_FILE))  # maintenance got there first
    with pytest.raises(BundleError, match=r"no model\.skops"):
        swap_champion(store, stored, token)
    store.put(bundle_key("b2", MODEL_FILE), b"other bytes")
    with pytest.raises(BundleError, match="does not match its manifest"):
        swap_champion(store, stored, token)
    pointer, _ = read_champion(store)
    assert pointer is not None and pointer.bundle_id == "b1"


def test_an_invalid_manifest_names_the_file_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"store/x.json: not a valid manifest \(family"):
        Manifest.from_json(b'{"bundle_id": "b1"}', "store/x.json")
