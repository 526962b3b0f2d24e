from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pytest
from sklearn.preprocessing import FunctionTransformer

from core.io.store import LocalStore
from core.release.bundle import (
    BundleError,
    bundle_key,
    bundle_uri,
    champion_bundle_id,
    load_bundle,
    read_champion,
    serialize_model,
    swap_champion,
    write_bundle,
)
from core.release.manifest import Manifest
from core.training.families import build_pipeline, default_params

TEXT = ["short_description", "close_notes"]


@pytest.fixture(scope="module")
def fitted(demo_frame: pd.DataFrame):
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    return model.fit(demo_frame[TEXT], demo_frame["label"].to_numpy(dtype=object))


def _manifest(bundle_id: str, score: float = 0.8) -> Manifest:
    return Manifest(bundle_id=bundle_id, family="linear_svm", metrics={"test_macro_f1": score})


def test_a_written_bundle_loads_after_verification(tmp_path: Path, fitted, demo_frame) -> None:
    store = LocalStore(tmp_path)
    stored = write_bundle(store, serialize_model(fitted), _manifest("b1"))
    assert bundle_uri(store, "b1").endswith("bundles/b1")
    model, manifest = load_bundle(store, "b1")
    assert manifest == stored and manifest.files["model.skops"].size > 0
    assert "scikit-learn" in manifest.libraries
    assert (model.predict(demo_frame[TEXT]) == fitted.predict(demo_frame[TEXT])).all()


def test_an_altered_model_file_is_refused(tmp_path: Path, fitted) -> None:
    store = LocalStore(tmp_path)
    write_bundle(store, serialize_model(fitted), _manifest("b1"))
    path = tmp_path / bundle_key("b1", "model.skops")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its manifest"):
        load_bundle(store, "b1")


def test_types_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    write_bundle(store, serialize_model(FunctionTransformer(func=os.getcwd)), _manifest("evil"))
    with pytest.raises(BundleError, match="outside the allow-list"):
        load_bundle(store, "evil")


def test_a_missing_bundle_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(LocalStore(tmp_path), "absent")


def test_racing_promotions_leave_exactly_one_champion(tmp_path: Path, fitted) -> None:
    store = LocalStore(tmp_path)
    for i in range(6):
        write_bundle(store, b"model", _manifest(f"b{i}"))
    _, token = read_champion(store)
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(swap_champion(store, _manifest(f"b{i}"), token))
        )
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert (champion_bundle_id(store) or "").startswith("b")
