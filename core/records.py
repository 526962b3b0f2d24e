"""Typed records that cross the boundaries between core's packages: what the prediction log
stores and returns, what monitoring and promotion decide. They sit below every package, so the
log can store a retrain decision without importing the policy that made it."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Verdict(StrEnum):
    """A drift test's verdict."""

    DRIFT = "drift"
    NO_DRIFT = "no drift"
    INSUFFICIENT = "insufficient data"


class RetrainAction(StrEnum):
    """What the retraining policy decided about one drift or request."""

    REQUESTED = "requested"
    SUPPRESSED_COOLDOWN = "suppressed: cooldown"
    SUPPRESSED_SAME_DRIFT = "suppressed: same drift"
    SUPPRESSED_DUPLICATE = "suppressed: duplicate request"
    NOT_NEEDED = "not needed"


class RetrainOutcome(StrEnum):
    """How a requested retrain ended, recorded when it does."""

    PROMOTED = "promoted"
    NOT_PROMOTED = "not promoted"
    FAILED = "failed"


@dataclass(frozen=True)
class RetrainDecision:
    """One decision about retraining, as stored and shown (monitor result, artifact, MLflow)."""

    decision_id: str
    decided_at: str
    model_version: str
    fired: tuple[str, ...]
    action: str
    reason: str
    source: str
    next_allowed_at: str | None = None
    outcome: str | None = None

    @property
    def requested(self) -> bool:
        return self.action == RetrainAction.REQUESTED

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "fired": list(self.fired)}

    def fired_json(self) -> str:
        return json.dumps(sorted(self.fired))


def new_decision_id() -> str:
    return str(uuid.uuid4())


#: A prediction under this confidence counts as low-confidence (metrics, history, dashboard).
LOW_CONFIDENCE = 0.5


@dataclass(frozen=True)
class HourStats:
    hour: str
    model_version: str
    prediction: str
    n: int
    confidence_sum: float
    low: int


class StoredTest(BaseModel):
    """One drift test as a stored report keeps it (core/monitoring/drift.DriftTest)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    statistic: float | None = None
    threshold: float = 0.0
    verdict: str = Verdict.INSUFFICIENT
    detail: str = ""
    p_value: float | None = None
    alpha: float | None = None
    #: What changed, for a fired test: summary, gained, lost, examples (request ids).
    explanation: dict[str, Any] | None = None

    @property
    def fired(self) -> bool:
        return self.verdict == Verdict.DRIFT


class StoredReport(BaseModel):
    """A monitor run's report as stored (``DriftReport.as_dict()`` plus its window). Reports
    stored before a field existed load with its default."""

    model_config = ConfigDict(frozen=True, extra="allow")

    tests: list[StoredTest] = Field(default_factory=list)
    n_predictions: int = 0
    n_feedback: int = 0
    drift_score: float = 0.0
    drift_detected: bool = False
    reasons: list[str] = Field(default_factory=list)
    fired: list[str] = Field(default_factory=list)
    window: str | None = None
    #: Performance estimated without labels (``PerformanceEstimate.as_dict()``), if any.
    estimated: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoredDriftReport:
    """A monitor run's report as the dashboard reads it back."""

    report_id: str
    checked_at: str
    model_version: str
    window_since: str | None
    drift_detected: bool
    drift_score: float
    retrain_action: str | None
    report: StoredReport


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion decision: who challenged whom, the scores, the decision and why."""

    decided_at: str
    challenger: str
    challenger_version: str | None
    champion: str | None
    champion_version: str | None
    challenger_macro_f1: float | None
    champion_macro_f1: float | None
    gain: float | None
    gain_ci: tuple[float, float] | None
    promoted: bool
    reason: str
    #: "promotion" (offline evidence), "shadow" (live labelled evidence), "rollback" (the
    #: champion went back to ``challenger``) or "canary-rollback" (the canary was stopped).
    kind: str = "promotion"
    #: What tells apart two decisions of the same kind about the same pair (a rollback's time).
    occasion: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def decision_key(self) -> str:
        """What makes two records the same decision: this challenger judged against this
        champion, with this result (a retry repeats it; a new evaluation of the same pair after
        the champion changed is another)."""
        verdict = "promoted" if self.promoted else "rejected"
        key = f"{self.challenger}|{self.champion or '-'}|{verdict}"
        return key if self.kind == "promotion" else f"{self.kind}|{key}|{self.occasion}"


@dataclass(frozen=True)
class WindowAggregates:
    """What the monitoring endpoints need from a window, computed by the database: counts per
    (model version, prediction) and the confusion counts of the labelled rows."""

    groups: list[tuple[str, str, int, float, int]]
    """(model_version, prediction, count, sum of confidence, count under LOW_CONFIDENCE)"""
    confusion: list[tuple[str, str, int]]
    """(true_label, prediction, count) over rows with feedback"""
    first_at: str | None
    last_at: str | None
