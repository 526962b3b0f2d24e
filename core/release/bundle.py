"""Model bundles: ``model.skops`` plus ``manifest.json``, verified before loading; the champion
pointer is written last with compare-and-set. Pickle is never used."""

from __future__ import annotations

import hashlib
import secrets
import zipfile
from datetime import UTC, datetime
from typing import Any

import skops.io as sio

from core.errors import BundleError, StoreError, TransientStoreError
from core.io.store import CHAMPION_KEY, ArtifactStore
from core.release.manifest import ChampionPointer, FileEntry, Manifest, PointerDecision

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
BUNDLES_PREFIX = "bundles"
#: One file per pointer move, named by time: the champions a rollback can go back to.
HISTORY_PREFIX = "champion-history"

#: Types outside skops' defaults that a bundle may contain. Anything else is refused.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "core.text.TextNormalizer",
        "core.models.EncodedLabels",
        "core.models.ToDense",
        "core.embeddings.StaticTokenEmbedding",
        "core.embeddings.SentenceEncoderEmbedding",
        "core.models.CompactTfidfVectorizer",
        "core.models.TemperatureScaledSVC",
        "core.models.StackedOneVsRest",
        "core.models.WeightedEnsemble",
        "core.models.Cascade",
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


def serialize_model(model: Any) -> bytes:
    return bytes(sio.dumps(model, compression=zipfile.ZIP_DEFLATED, compresslevel=6))


def deserialize_model(data: bytes) -> Any:
    """Load skops bytes, refusing any type that is not on the allow-list."""
    untrusted = set(sio.get_untrusted_types(data=data))
    refused = sorted(untrusted - ALLOWED_TYPES)
    if refused:
        raise BundleError(f"model file holds types outside the allow-list: {refused}")
    return sio.loads(data, trusted=sorted(untrusted))


def new_bundle_id(family: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{family}-{secrets.token_hex(3)}"


def file_entry(data: bytes) -> FileEntry:
    return FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def bundle_key(bundle_id: str, name: str) -> str:
    return f"{BUNDLES_PREFIX}/{bundle_id}/{name}"


def write_bundle(store: ArtifactStore, model_bytes: bytes, manifest: Manifest) -> Manifest:
    """Write the model, then the manifest that vouches for it (with the model file's digest);
    returns the manifest as stored."""
    stored = manifest.model_copy(update={"files": {MODEL_FILE: file_entry(model_bytes)}})
    store.put(bundle_key(manifest.bundle_id, MODEL_FILE), model_bytes)
    store.put(bundle_key(manifest.bundle_id, MANIFEST_FILE), stored.to_json())
    return stored


def bundle_uri(store: ArtifactStore, bundle_id: str) -> str:
    return store.uri(f"{BUNDLES_PREFIX}/{bundle_id}")


def read_manifest(
    store: ArtifactStore, bundle_id: str, manifest_sha256: str | None = None
) -> Manifest:
    """A bundle's manifest; with ``manifest_sha256`` (from the champion pointer) the stored
    file must have that digest. A store that cannot be reached stays a StoreError (it may come
    back); a manifest that is missing, altered or invalid is a BundleError."""
    key = bundle_key(bundle_id, MANIFEST_FILE)
    try:
        data = store.get(key)
    except TransientStoreError:
        raise
    except StoreError as exc:
        raise BundleError(f"bundle {bundle_id}: unreadable manifest ({exc})") from exc
    if manifest_sha256 is not None and hashlib.sha256(data).hexdigest() != manifest_sha256:
        raise BundleError(
            f"bundle {bundle_id}: {MANIFEST_FILE} does not match the digest in the champion pointer"
        )
    return Manifest.from_json(data, store.uri(key))


def load_bundle(
    store: ArtifactStore, bundle_id: str, manifest_sha256: str | None = None
) -> tuple[Any, Manifest]:
    """The model and its manifest, after checking the manifest against the pointer's digest
    (when given) and the model file's size and sha256 against the manifest."""
    manifest = read_manifest(store, bundle_id, manifest_sha256)
    model_bytes = verified_model_bytes(store, manifest)
    check_encoder(manifest)
    try:
        return deserialize_model(model_bytes), manifest
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"bundle {bundle_id}: cannot load {MODEL_FILE} ({exc})") from exc


def verified_model_bytes(store: ArtifactStore, manifest: Manifest) -> bytes:
    """The bundle's model file, after checking its size and sha256 against the manifest. A
    store that cannot be reached stays a StoreError; a file that is missing or altered, or a
    manifest that lists none, is a BundleError."""
    bundle_id = manifest.bundle_id
    entry = manifest.files.get(MODEL_FILE)
    if entry is None:
        raise BundleError(f"bundle {bundle_id}: manifest lists no {MODEL_FILE}")
    try:
        model_bytes = store.get(bundle_key(bundle_id, MODEL_FILE))
    except TransientStoreError:
        raise
    except StoreError as exc:
        raise BundleError(f"bundle {bundle_id}: no {MODEL_FILE} ({exc})") from exc
    if file_entry(model_bytes) != entry:
        raise BundleError(f"bundle {bundle_id}: {MODEL_FILE} does not match its manifest")
    return model_bytes


def check_encoder(manifest: Manifest) -> None:
    """A model that runs the sentence encoder loads only where the same encoder is installed and
    its weights match their pinned digest: otherwise it would answer with other numbers."""
    if not manifest.encoder:
        return
    from core.encoder import EncoderUnavailableError, encoder_info

    try:
        installed = encoder_info()
    except EncoderUnavailableError as exc:
        raise BundleError(f"bundle {manifest.bundle_id} needs the sentence encoder: {exc}") from exc
    wanted = manifest.encoder.get("weights_sha256")
    if wanted != installed.weights_sha256:
        raise BundleError(
            f"bundle {manifest.bundle_id} was trained with encoder weights {str(wanted)[:16]}..., "
            f"the installed ones are {installed.weights_sha256[:16]}..."
        )


def read_champion(store: ArtifactStore) -> tuple[ChampionPointer | None, str | None]:
    """The champion pointer and its version token (for compare-and-set); (None, None) when there
    is no pointer. Anything else that is not a pointer is a BundleError, never "no champion"."""
    data, token = store.read_versioned(CHAMPION_KEY)
    if data is None:
        return None, None
    return ChampionPointer.from_json(data, store.uri(CHAMPION_KEY)), token


def champion_bundle_id(store: ArtifactStore) -> str | None:
    """The id of the bundle the champion pointer names, if any."""
    pointer, _ = read_champion(store)
    return pointer.bundle_id if pointer else None


def champion_pointer(
    store: ArtifactStore, bundle_id: str, decision: PointerDecision | None = None
) -> ChampionPointer:
    """A pointer to a stored bundle, carrying the digest of its manifest file as it is in the
    store (read back, so the digest is of the bytes every reader will check). The model file is
    checked against the manifest first: a pointer never names a bundle whose model is missing or
    altered (maintenance once deleted a training's model before its manifest was written, and
    the swap went ahead on the manifest alone)."""
    data = store.get(bundle_key(bundle_id, MANIFEST_FILE))
    manifest = Manifest.from_json(data, store.uri(bundle_key(bundle_id, MANIFEST_FILE)))
    verified_model_bytes(store, manifest)
    return ChampionPointer(
        bundle_id=bundle_id,
        family=manifest.family,
        model_version=manifest.mlflow.model_version,
        test_macro_f1=manifest.test_macro_f1,
        manifest_file_sha256=hashlib.sha256(data).hexdigest(),
        promoted_at=datetime.now(UTC).isoformat(),
        decision=decision,
    )


def swap_champion(
    store: ArtifactStore,
    manifest: Manifest,
    expected_token: str | None,
    decision: PointerDecision | None = None,
) -> bool:
    """Point the champion at this (stored, verified) bundle unless someone moved the pointer
    meanwhile; ``decision`` is kept in the pointer, and the pointer in the champion history."""
    return swap_pointer(
        store, champion_pointer(store, manifest.bundle_id, decision), expected_token
    )


def swap_pointer(
    store: ArtifactStore, pointer: ChampionPointer, expected_token: str | None
) -> bool:
    """Write ``pointer`` by compare-and-set, then add it to the history. A crash between the
    two leaves the current pointer out of the history, which ``champion_history`` adds back."""
    if not store.compare_and_put(CHAMPION_KEY, pointer.to_json(), expected_token):
        return False
    store.put(history_key(pointer), pointer.to_json())
    return True


def history_key(pointer: ChampionPointer) -> str:
    stamp = (pointer.promoted_at or "").replace(":", "").replace("-", "").replace("+0000", "Z")
    return f"{HISTORY_PREFIX}/{stamp}-{pointer.bundle_id}.json"


def champion_history(store: ArtifactStore) -> list[ChampionPointer]:
    """Every champion the pointer named, oldest first, the current one last. Entries that do
    not parse are skipped (the history informs a rollback; the pointer is the truth)."""
    entries = []
    for key in sorted(store.list(HISTORY_PREFIX)):
        try:
            entries.append(ChampionPointer.from_json(store.get(key), store.uri(key)))
        except (BundleError, StoreError):
            continue
    entries.sort(key=lambda entry: entry.promoted_at or "")
    current, _ = read_champion(store)
    if current is not None and (not entries or entries[-1] != current):
        entries.append(current)
    return entries


def stored_bundles(store: ArtifactStore) -> list[tuple[str, str]]:
    """(bundle id, created at) of every bundle in the store. A bundle without a readable
    manifest (a training may be writing it) is dated by the time in its id, else "" (unknown)."""
    ids = sorted({key.split("/")[1] for key in store.list(BUNDLES_PREFIX) if key.count("/") >= 2})
    bundles = []
    for bundle_id in ids:
        try:
            created = read_manifest(store, bundle_id).created_at
        except BundleError:
            created = bundle_id_time(bundle_id) or ""
        bundles.append((bundle_id, created))
    return bundles


def bundle_id_time(bundle_id: str) -> str | None:
    """The creation time ``new_bundle_id`` put in an id, as ISO, or None."""
    try:
        stamp = datetime.strptime(bundle_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).isoformat()


def label_audit_key(bundle_id: str) -> str:
    """Where a bundle's list of suspected label errors is kept (core/training/label_audit)."""
    return f"label-audits/{bundle_id}.json"


def delete_bundle(store: ArtifactStore, bundle_id: str) -> None:
    """The model file first, then the manifest: a reader never finds a manifest vouching for a
    model that is being deleted without noticing (the model check fails). Its label audit
    goes with it."""
    store.delete(bundle_key(bundle_id, MODEL_FILE))
    store.delete(bundle_key(bundle_id, MANIFEST_FILE))
    store.delete(label_audit_key(bundle_id))
