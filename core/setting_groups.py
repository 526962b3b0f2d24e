"""The settings' vocabulary and its groups: durations, API keys and webhook secrets as the
environment gives them, and the sub-models ``Settings`` nests (notifications, SMTP, retraining,
serving). Each group field keeps its flat ``TICKETS_*`` name (``FLAT_NAMES``): the environment,
the compose file and ``Settings(smtp_host=...)`` all say ``smtp_host``; code reads
``settings.smtp.host``."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from core.errors import InputError

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """Seconds in a duration such as ``30m``, ``24h`` or ``7d``; InputError otherwise."""
    value = text.strip().lower()
    if len(value) < 2 or value[-1] not in DURATION_UNITS or not value[:-1].isdigit():
        raise InputError(f"{text!r} is not a duration like 30m, 24h or 7d")
    if len(value) > 12:
        raise InputError(f"duration {text!r} is too long")
    return int(value[:-1]) * DURATION_UNITS[value[-1]]


MIN_API_KEY_CHARS = 16
#: Values that templates ship with; a key equal to one of them (or containing "change-me")
#: would let anyone who read the template in.
PLACEHOLDER_KEYS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "admin", "apikey", "api-key"}
)


def check_api_key(key: str) -> None:
    """Refuse keys a guesser would try first: short ones and template placeholders."""
    folded = key.strip().lower()
    if folded in PLACEHOLDER_KEYS or "change-me" in folded or "changeme" in folded:
        raise ValueError("an API key must not be a placeholder such as CHANGE-ME")
    if len(key.strip()) < MIN_API_KEY_CHARS:
        raise ValueError(
            f"an API key needs at least {MIN_API_KEY_CHARS} characters "
            f"(this one has {len(key.strip())}); generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )


def decode_webhook_secret(secret: str) -> bytes | None:
    """The key bytes of a Standard Webhooks secret ``whsec_<base64>``; None when malformed."""
    if not secret.startswith("whsec_"):
        return None
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return None
    return key if len(key) >= 24 else None


def _duration(value: object) -> object:
    """``30m``, ``24h``, ``7d`` (as the environment gives them) become timedeltas; ISO 8601
    (``P1D``, as a dumped Settings holds them) is left to pydantic."""
    if isinstance(value, str) and not value.strip().upper().startswith("P"):
        try:
            return timedelta(seconds=duration_seconds(value))
        except InputError as exc:
            raise ValueError(str(exc)) from exc
    return value


def comma_separated(value: object) -> object:
    """Lists come from the environment as comma-separated strings."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def unset_if_empty(value: object) -> object:
    """Compose and Kubernetes pass unset variables as ""; that means "not set"."""
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, SecretStr) and not value.get_secret_value().strip():
        return None
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Optional = BeforeValidator(unset_if_empty)
GROUP_CONFIG = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class NotifySettings(BaseModel):
    """Who is told of drift, promotions and failed runs, and the links they get."""

    model_config = GROUP_CONFIG

    slack_url: Annotated[SecretStr | None, Optional] = Field(
        None,
        description='Slack-compatible incoming webhook (posts {"text": ...}) told of drift, '
        "promotions and failed runs.",
    )
    email_to: Annotated[tuple[str, ...], BeforeValidator(comma_separated)] = Field(
        (), description="Comma-separated addresses told of the same, over SMTP."
    )
    email_from: str = Field("tickets@localhost", description="Sender of those e-mails.")
    webhook_url: Annotated[SecretStr | None, Optional] = Field(
        None, description="Generic JSON webhook told of the same (one JSON object per event)."
    )
    dashboard_url: Annotated[str | None, Optional] = Field(
        None,
        description="The dashboard as operators reach it, linked from notifications. Default: "
        "http://127.0.0.1:8000/dashboard.",
    )
    prefect_ui_url: Annotated[str | None, Optional] = Field(
        None,
        description="Prefect UI as operators reach it, for run links. Default: the Prefect API "
        "URL without /api.",
    )

    @field_validator("email_to")
    @classmethod
    def _check_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            local, _, domain = address.partition("@")
            if not local or not domain or any(c.isspace() or c in "<>,;" for c in address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value


class SmtpSettings(BaseModel):
    """The SMTP server notification e-mails go through."""

    model_config = GROUP_CONFIG

    host: Annotated[str | None, Optional] = Field(
        None, description="SMTP server for notification e-mails."
    )
    port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls (port 587), ssl (port 465) or none (a local relay)."
    )
    username: Annotated[str | None, Optional] = Field(
        None, description="SMTP login, if the server wants one."
    )
    password: Annotated[SecretStr | None, Optional] = Field(None, description="SMTP password.")


class RetrainingSettings(BaseModel):
    """How often drift and signed requests may start a retrain."""

    model_config = GROUP_CONFIG

    cooldown: Duration = Field(
        timedelta(hours=24),
        description="At most one drift-triggered retrain per champion in this time for the same "
        "fired tests.",
    )
    max_backoff: Duration = Field(
        timedelta(days=7),
        description="Longest wait after retrains for the same drift keep not promoting.",
    )
    request_window: Duration = Field(
        timedelta(minutes=10),
        description="Signed retrain requests with the same reason within this start one run.",
    )


HttpServer = Literal["granian", "uvicorn"]


class ServingSettings(BaseModel):
    """The request path: limits, micro-batching, the champion watch and readiness."""

    model_config = GROUP_CONFIG

    server: HttpServer = Field(
        "uvicorn",
        description="The HTTP server of `tickets serve`: uvicorn (uvloop, httptools; the faster "
        "on one core in benchmarks/results/serving.json) or granian (Rust HTTP handling).",
    )
    serve_routes: Literal["all", "api", "webhooks"] = Field(
        "all",
        description="What a service process answers: all of it; api, everything but the "
        "webhooks (a public prediction service that holds no Prefect credential); webhooks, "
        "only the webhooks and health (the one process that sends Prefect events).",
    )
    model_poll_s: float = Field(10.0, gt=0, description="How often serving checks the champion.")
    max_batch: int = Field(1000, ge=1, description="Tickets per /predict/batch request.")
    max_text_chars: int = Field(10_000, ge=1, description="Characters per text field.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Request body limit.")
    top_k: int = Field(3, ge=1, description="Top labels returned with each prediction.")
    micro_batch_max: int = Field(64, ge=1, description="Tickets gathered into one model call.")
    micro_batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Longest wait for company before a model call, taken only when the last "
        "call had company and fewer tickets are queued now (a lone request never waits).",
    )
    model_watch_max_backoff_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait between champion checks after failures (backoff doubles up to "
        "this); keep it within 3 x model_poll_s so recovery is seen within three polls.",
    )
    ready_cache_s: float = Field(
        1.5, ge=0, description="How long /ready trusts its last check that the log takes writes."
    )
    monitoring_threads: int = Field(
        1,
        ge=1,
        description="Threads per worker for drift reports, aggregates and dashboard pages (their "
        "own lane, never the pool the model and the log need).",
    )
    monitoring_isolation: Literal["process", "thread"] = Field(
        "process",
        description="Where drift reports and dashboard pages are computed: a process of their "
        "own per worker at a lower CPU priority (predictions keep their latency), or the "
        "lane's threads (no extra process).",
    )
    monitoring_queue: int = Field(
        8, ge=0, description="Monitoring requests that may wait for the lane; more get 503."
    )
    explain_isolation: Literal["process", "thread"] = Field(
        "process",
        description="Where /explain computes: a process of its own per worker at a lower CPU "
        "priority that loads the served bundle (an explanation of a long ticket on a tree "
        "model is seconds of Python that would otherwise hold the interpreter /predict "
        "needs), or a thread of the worker (no extra process).",
    )
    monitoring_cache_s: float = Field(
        10.0, ge=0, description="How long a drift report, aggregate or page is reused."
    )


class RolloutSettings(BaseModel):
    """Trying a challenger on live traffic (shadow, canary), judging it, and rolling back."""

    model_config = GROUP_CONFIG

    shadow_share: float = Field(
        1.0, ge=0, le=1, description="Share of tickets a shadow challenger also scores."
    )
    shadow_queue: int = Field(
        10_000,
        ge=1,
        description="Tickets waiting for the shadow; beyond it they go unscored (counted), so "
        "a slow shadow never holds memory or answers back.",
    )
    shadow_isolation: Literal["process", "thread"] = Field(
        "process",
        description="Where the shadow scores: a process of its own per worker at a lower CPU "
        "priority (answers keep their latency; under overload it drops tickets, counted), or "
        "a thread of the worker.",
    )
    shadow_rejected: bool = Field(
        False,
        description="A retrained challenger that was not promoted starts in shadow, so live "
        "labelled evidence can promote it later.",
    )
    min_predictions: int = Field(
        200, ge=10, description="Canary tickets needed before its health is judged."
    )
    min_feedback: int = Field(
        50, ge=10, description="Labelled tickets per side needed to judge or promote on quality."
    )
    error_rate_margin: float = Field(
        0.02, ge=0, le=1, description="Canary error rate above the champion's that rolls it back."
    )
    p99_ratio: float = Field(
        1.5, ge=1, description="Canary p99 latency over the champion's that rolls it back."
    )
    low_confidence_margin: float = Field(
        0.10,
        ge=0,
        le=1,
        description="Canary share of low-confidence answers above the champion's that rolls "
        "it back.",
    )
    macro_f1_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Canary macro-F1 on feedback below the champion's (interval below 0 too) "
        "that rolls it back.",
    )
    rollback_depth: int = Field(
        3, ge=1, description="Earlier champions whose bundles retention keeps for a rollback."
    )
    evidence_window: str = Field(
        "7d",
        description="How far back the six-hourly pipeline reads live evidence on a shadow "
        "(never before the shadow started).",
    )

    @field_validator("evidence_window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        duration_seconds(value)
        return value


class ScaleSettings(BaseModel):
    """Where the studies run: this process's threads, or a Dask cluster (prefect-dask), and the
    Optuna storage their trial loops share."""

    model_config = GROUP_CONFIG

    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="Studies, refits and scoring on this process's threads, or on a Dask "
        "cluster (TICKETS_DASK_ADDRESS, or a local cluster of TICKETS_DASK_WORKERS processes).",
    )
    dask_address: str | None = Field(
        None, description="A running Dask scheduler (tcp://host:8786); unset: a local cluster."
    )
    dask_workers: int = Field(
        2, ge=1, description="Worker processes of the local Dask cluster started for a run."
    )
    # Secret: a PostgreSQL URL carries its password, and settings travel as flow-run parameters,
    # which Prefect stores and shows (SecretStr shows as ****).
    optuna_storage: SecretStr | None = Field(
        None,
        description="Optuna storage the studies share: a PostgreSQL URL, or journal:<file> "
        "for one machine; unset: in memory (one trial loop per study).",
    )
    workers_per_study: int = Field(
        1,
        ge=1,
        description="Trial loops per study, each a task of its own (on its own Dask worker), "
        "against the same study in TICKETS_OPTUNA_STORAGE.",
    )

    @field_validator("optuna_storage")
    @classmethod
    def _check_storage(cls, secret: SecretStr | None) -> SecretStr | None:
        value = secret.get_secret_value().strip() if secret else ""
        if not value:
            return None
        if value.startswith("sqlite"):
            raise ValueError(
                "SQLite locks under parallel trial loops; use journal:<file> on one machine "
                "or a PostgreSQL URL"
            )
        if not value.startswith(("journal:", "postgresql", "mysql")):
            raise ValueError("expected journal:<file> or a postgresql:// URL")
        return SecretStr(value)

    def storage_url(self) -> str | None:
        """The Optuna storage's URL itself (it may hold a password: never log or show it)."""
        return self.optuna_storage.get_secret_value() if self.optuna_storage else None

    @model_validator(mode="after")
    def _loops_share_a_storage(self) -> ScaleSettings:
        if self.workers_per_study > 1 and not self.optuna_storage:
            raise ValueError(
                "TICKETS_WORKERS_PER_STUDY above 1 needs TICKETS_OPTUNA_STORAGE (the trial "
                "loops of one study meet there)"
            )
        return self


#: Each group's fields by their flat name (``TICKETS_<FLAT NAME>`` in the environment).
FLAT_NAMES: dict[str, tuple[str, str]] = {
    **{
        f"notify_{name}": ("notify", name)
        for name in ("slack_url", "email_to", "email_from", "webhook_url")
    },
    "dashboard_url": ("notify", "dashboard_url"),
    "prefect_ui_url": ("notify", "prefect_ui_url"),
    **{f"smtp_{name}": ("smtp", name) for name in SmtpSettings.model_fields},
    **{f"retrain_{name}": ("retraining", name) for name in RetrainingSettings.model_fields},
    **{name: ("serving", name) for name in ServingSettings.model_fields},
    **{f"rollout_{name}": ("rollout", name) for name in RolloutSettings.model_fields},
    **{name: ("scale", name) for name in ScaleSettings.model_fields},
}


def group_flat_names(data: dict[str, Any]) -> dict[str, Any]:
    """``{"smtp_host": h}`` as ``{"smtp": {"host": h}}``; a value given in the group wins."""
    grouped = dict(data)
    for flat, (group, name) in FLAT_NAMES.items():
        if flat not in grouped:
            continue
        value = grouped.pop(flat)
        nested = grouped.get(group) or {}
        if isinstance(nested, BaseModel):
            nested = {key: getattr(nested, key) for key in nested.model_fields_set}
        grouped[group] = {name: value, **nested}
    return grouped


_BY_GROUP = {grouped: flat for flat, grouped in FLAT_NAMES.items()}


def flat_name(location: tuple[int | str, ...]) -> str:
    """The name a validation error's location has in the environment (without ``TICKETS_``):
    ``("smtp", "port")`` is ``smtp_port``, a top-level field its own name."""
    if len(location) >= 2 and (str(location[0]), str(location[1])) in _BY_GROUP:
        return _BY_GROUP[(str(location[0]), str(location[1]))]
    return ".".join(map(str, location))
