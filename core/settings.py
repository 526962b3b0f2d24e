"""One frozen settings object for every knob; read from TICKETS_* variables only at entry points."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.setting_groups import (
    FLAT_NAMES,
    NotifySettings,
    RetrainingSettings,
    RolloutSettings,
    ScaleSettings,
    ServingSettings,
    SmtpSettings,
    check_api_key,
    comma_separated,
    decode_webhook_secret,
    duration_seconds,
    group_flat_names,
    unset_if_empty,
)

FAMILIES: tuple[str, ...] = (
    "logistic_regression",
    "linear_svm",
    "random_forest",
    "extra_trees",
    "gradient_boosting",
    "xgboost",
    "lightgbm",
)


class Settings(BaseSettings):
    """Everything configurable. Tests build ``Settings(...)`` directly."""

    model_config = SettingsConfigDict(
        env_prefix="TICKETS_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    home: Path = Field(Path(".tickets"), description="Working folder for embedded stores.")
    store_url: str | None = Field(
        None, description="file:///path or s3://bucket/prefix; default: <home>/store."
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto).")
    s3_bucket_block: str | None = Field(
        None,
        description="A prefect-aws S3Bucket block (with its AwsCredentials) naming the artifact "
        "store: flows read it when they start, instead of TICKETS_STORE_URL and AWS_* variables.",
    )
    # Filled in from the S3Bucket block's credentials (secrets: settings are flow parameters);
    # unset, boto3 finds credentials itself (AWS_* variables, a role).
    s3_access_key_id: SecretStr | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    s3_region: str | None = Field(None, description="S3 region.")
    # Secret: a tracking URI may carry a password (http://user:password@host), and settings
    # travel as flow-run parameters, which Prefect stores and shows (SecretStr shows as ****).
    mlflow_tracking_uri: SecretStr | None = Field(
        None, description="Default: SQLite at <home>/mlflow.db."
    )
    mlflow_experiment: str = Field("tickets", description="MLflow experiment of the trainings.")
    registered_model_name: str = Field(
        "ticket-classifier", description="MLflow registered model the champions belong to."
    )
    data_path: str | None = Field(None, description="Training table: CSV/Parquet, local or s3://.")
    data_encoding: str | None = Field(
        None,
        description="Encoding of CSV/JSON Lines data; default: detected (UTF-8, else "
        "Windows-1252, else Latin-1).",
    )
    intake_max_bytes: int = Field(
        1 << 30,
        ge=1,
        description="Largest training table read, in bytes, compressed and (for .xlsx) "
        "decompressed; a larger one is refused with a clear error.",
    )
    intake_max_rows: int = Field(
        5_000_000, ge=1, description="Most rows a training table may have."
    )
    intake_max_columns: int = Field(
        500, ge=1, description="Most columns a training table may have."
    )
    text_columns: Annotated[tuple[str, ...], NoDecode] = Field(
        ("short_description", "close_notes"),
        description="Text columns of a training table, comma-separated; the first is the short "
        "description, the second (optional) the close notes.",
    )
    label_column: str = Field("label", description="Label column of a training table.")
    language: str = Field("spanish", description="Language of the stop words and the stemmer.")
    families: Annotated[tuple[str, ...], NoDecode] = Field(
        FAMILIES, description="Model families to tune, comma-separated (default: all seven)."
    )
    profile: Literal["standard", "fast"] = Field(
        "standard",
        description="standard: the linear families may add a multilingual sentence encoder "
        "(multilingual-e5-small) to their TF-IDF features where cross-validation says it "
        "helps (better on paraphrases and small tables; tens of milliseconds a ticket to "
        "serve); fast: TF-IDF (+ token table) only, /predict p99 about 20 ms at 16 clients. "
        "The old name accurate means standard.",
    )
    ensemble: bool = Field(
        True,
        description="Refit an ensemble of the search's trials (forward selection on their "
        "out-of-fold probabilities, kept when bias-corrected CV says it beats the best linear "
        "default) instead of the single best configuration.",
    )
    cascade: bool = Field(
        True,
        description="Serve a model that runs the sentence encoder behind a TF-IDF gate: the "
        "tickets the gate is sure of (a threshold chosen so that out-of-fold macro-F1 stays "
        "the model's) skip the encoder.",
    )
    trials: int = Field(12, ge=1, description="Optuna trials per study.")
    timeout_s: float = Field(150.0, gt=0, description="Time budget per study, seconds.")
    cv_folds: int = Field(3, ge=2, description="Cross-validation folds on large tables.")
    small_table_rows: int = Field(
        2000,
        ge=0,
        description="Below this many training rows: 5 folds (twice below 500), no pruning, and "
        "bias-corrected selection between the best linear default and the search's best "
        "(0 turns it off).",
    )
    test_size: float = Field(
        0.2, gt=0, lt=1, description="Share of the table held out as the test split."
    )
    seed: int = Field(42, description="Seed of splits, folds, samplers and models.")
    max_concurrent_studies: int = Field(
        2, ge=1, description="Studies running side by side (each gets its share of the cores)."
    )
    label_audit: bool = Field(
        True,
        description="Flag training rows whose label looks wrong (confident learning on the "
        "winner's out-of-fold probabilities: cv_folds extra fits per training).",
    )
    exclude_suspected_labels: bool = Field(
        False, description="Refit the winner without the rows the label audit flags."
    )
    promotion_margin: float = Field(0.01, ge=0, description="Macro-F1 gain needed to promote.")
    demo_rows: int = Field(
        5000, ge=100, description="Demo tickets `tickets run` generates when there is no data."
    )
    prediction_log_path: Path | None = Field(None, description="Default: <home>/predictions.db.")
    # Secret for the same reason: postgresql://user:password@host/db.
    prediction_log_url: SecretStr | None = Field(
        None, description="postgresql://... to keep the prediction log in PostgreSQL."
    )
    prediction_log_wait_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Longest wait for the log (a SQLite lock, a pooled PostgreSQL connection) "
        "before a request answers 503 with Retry-After.",
    )
    study_cache_key: SecretStr | None = Field(
        None,
        description="Key signing the finished-study cache (16+ characters, not a placeholder); "
        "every worker sharing an S3 store needs the same one. Default: one generated under "
        "home.",
    )
    canary_key: SecretStr | None = Field(
        None,
        description="Key of the canary split's HMAC (16+ characters, not a placeholder), the "
        "same on every worker of every machine. Default: one generated under home.",
    )
    admin_api_key: SecretStr | None = Field(
        None,
        description="When set, admin endpoints need it in the X-API-Key header (16+ characters).",
    )
    label_api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description="Keys (comma-separated, 16+ characters each) that may send true labels in "
        "X-API-Key; without one, /feedback and true_label answer 403.",
    )
    drift_p_value: float = Field(0.05, gt=0, lt=1, description="Family-wise significance level.")
    drift_score_threshold: float = Field(
        0.5, gt=0, le=1, description="Share of fired tests that means drift."
    )
    performance_drop: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Macro-F1 drop on feedback (vs test) that means concept drift.",
    )
    low_confidence_share: float = Field(
        0.30, gt=0, lt=1, description="Share of predictions under 0.5 confidence that fires."
    )
    min_predictions: int = Field(100, ge=10, description="Below this a drift test has no verdict.")
    min_feedback: int = Field(
        50, ge=10, description="Labelled predictions needed for concept drift."
    )
    psi_threshold: float = Field(0.25, gt=0, description="PSI of predicted classes that fires.")
    ks_threshold: float = Field(0.1, gt=0, lt=1, description="KS statistic of lengths that fires.")
    js_threshold: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Jensen-Shannon distance of token shares, beyond sampling noise, that fires.",
    )
    oov_increase: float = Field(
        0.05, gt=0, lt=1, description="Rise of the out-of-vocabulary rate that fires."
    )
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description="Standard Webhooks secrets (whsec_<base64>), comma-separated; several allow "
        "key rotation. Webhooks answer 503 until one is set.",
    )
    webhook_tolerance_s: int = Field(300, ge=1, description="Accepted clock skew of webhooks.")
    webhook_lease_s: int = Field(
        300, ge=5, description="A webhook id claimed this long without finishing may be retried."
    )
    prefect_api_url: str | None = Field(
        None, description="Prefect API the service sends events to, e.g. http://127.0.0.1:4200/api."
    )
    prefect_api_key: SecretStr | None = Field(
        None, description="Bearer key for the Prefect API (Prefect Cloud or a secured server)."
    )
    prefect_api_auth_string: SecretStr | None = Field(
        None, description="user:password for a Prefect server with basic authentication."
    )
    monitoring_max_window: str = Field(
        "31d", description="Longest window the monitoring endpoints accept."
    )
    monitoring_max_rows: int = Field(
        20_000,
        ge=100,
        description="Most prediction rows a drift report reads: larger windows are sampled "
        "(seeded, spread evenly over the window).",
    )
    s3_connect_timeout_s: float = Field(3.0, gt=0, description="S3 connect timeout.")
    s3_read_timeout_s: float = Field(10.0, gt=0, description="S3 read timeout.")
    s3_max_attempts: int = Field(3, ge=1, description="S3 attempts per call (standard retries).")
    monitor_window: str = Field("24h", description="Prediction-log window the monitor reads.")
    notify: NotifySettings = Field(default_factory=NotifySettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    retraining: RetrainingSettings = Field(default_factory=RetrainingSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)
    log_retention_days: int = Field(
        90, ge=1, description="Prediction rows older than this are deleted (feedback rows aside)."
    )
    feedback_retention_days: int = Field(
        365,
        ge=1,
        description="Feedback-labelled rows are the retraining set: kept (and used) this long.",
    )
    keep_bundles: int = Field(
        10, ge=1, description="Bundles kept besides the champion: the most recent ones."
    )
    retention_grace_hours: float = Field(
        24.0,
        gt=0,
        description="Bundles and model versions younger than this are never deleted or "
        "archived: a training still running may be about to promote them. Keep it longer than "
        "the longest training.",
    )

    @field_validator(
        "text_columns",
        "families",
        "webhook_secrets",
        "label_api_keys",
        mode="before",
    )
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        return comma_separated(value)

    @field_validator("profile", mode="before")
    @classmethod
    def _renamed_profile(cls, value: object) -> object:
        """``accurate`` was the encoder profile's name until the encoder became the default."""
        if value == "accurate":
            warnings.warn(
                "TICKETS_PROFILE=accurate is now the default profile, standard; the old name "
                "will stop being accepted in a later release",
                FutureWarning,
                stacklevel=2,
            )
            return "standard"
        return value

    @field_validator(
        "admin_api_key",
        "study_cache_key",
        "canary_key",
        "prefect_api_key",
        "prefect_api_auth_string",
        "prediction_log_url",
        "prefect_api_url",
        "store_url",
        "s3_endpoint_url",
        "mlflow_tracking_uri",
        "data_path",
        "data_encoding",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return unset_if_empty(value)

    @field_validator("admin_api_key", "study_cache_key", "canary_key")
    @classmethod
    def _check_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_api_key(value.get_secret_value())
        return value

    @field_validator("label_api_keys")
    @classmethod
    def _check_label_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for key in value:
            check_api_key(key.get_secret_value())
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _check_secrets(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for secret in value:
            if not decode_webhook_secret(secret.get_secret_value()):
                raise ValueError("a webhook secret must look like whsec_<base64 of 24+ bytes>")
        return value

    @field_validator(
        "monitor_window",
        "monitoring_max_window",
    )
    @classmethod
    def _check_duration(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _group(cls, data: Any) -> Any:
        """Flat names of group fields (``smtp_host``) go into their group (``smtp.host``)."""
        return group_flat_names(data) if isinstance(data, dict) else data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment's TICKETS_* variables of group fields, by their flat names, after
        the keyword arguments and the top-level fields' variables."""
        flat = _FlatGroupNames(settings_cls)
        return init_settings, env_settings, flat, dotenv_settings, file_secret_settings

    @classmethod
    def env_names(cls) -> list[str]:
        """Every TICKETS_* variable a setting is read from."""
        top = [name for name in cls.model_fields if name not in GROUPS]
        return [f"TICKETS_{name.upper()}" for name in (*top, *FLAT_NAMES)]

    @field_validator("families")
    @classmethod
    def _check_families(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown families {unknown}; choose from {list(FAMILIES)}")
        return value

    def artifact_store_url(self) -> str:
        """Where bundles and the champion pointer live."""
        return self.store_url or (self.home / "store").resolve().as_uri()

    def tracking_uri(self) -> str:
        """MLflow tracking URI; a SQLite file under ``home`` unless configured."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri.get_secret_value()
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def mlflow_artifact_location(self) -> str | None:
        """Where new experiments keep artifacts: beside the embedded SQLite store, or the
        tracking server's own default (e.g. proxied to S3) when tracking is remote."""
        if self.tracking_uri().startswith(("http://", "https://", "databricks")):
            return None
        return (self.home / "mlartifacts").resolve().as_uri()

    def predictions_path(self) -> Path:
        return self.prediction_log_path or self.home / "predictions.db"

    def encoder_cache_path(self) -> Path:
        """Sentence-encoder vectors kept between trainings (the standard profile)."""
        return self.home / "embeddings.sqlite"

    def default_data_path(self) -> Path:
        """Where ``make run`` writes the generated demo dataset."""
        return self.home / "data" / "demo_tickets.csv"


GROUPS = frozenset(group for group, _ in FLAT_NAMES.values())


class _FlatGroupNames(PydanticBaseSettingsSource):
    """TICKETS_SMTP_HOST and its kind, as flat keys that ``Settings._group`` nests."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environment = {key.upper(): value for key, value in os.environ.items()}
        return {
            flat: environment[f"TICKETS_{flat.upper()}"]
            for flat in FLAT_NAMES
            if f"TICKETS_{flat.upper()}" in environment
        }


def get_settings() -> Settings:
    """Read the environment; call only at entry points."""
    return Settings()
