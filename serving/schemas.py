"""Request and response bodies. Unknown fields, wrong types and nulls are refused (400)."""

from __future__ import annotations

import msgspec


class Ticket(msgspec.Struct, forbid_unknown_fields=True):
    short_description: str
    close_notes: str | None = None
    true_label: str | None = None


class TicketBatch(msgspec.Struct, forbid_unknown_fields=True):
    tickets: list[Ticket]


class Feedback(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    true_label: str


class LabelScore(msgspec.Struct):
    label: str
    score: float


class Prediction(msgspec.Struct):
    prediction: str
    probability: float
    probabilities: list[LabelScore]
    model_version: str
    request_id: str
    #: "champion", or "canary" when the challenger under canary answered.
    route: str = "champion"


class BatchPrediction(msgspec.Struct):
    predictions: list[Prediction]
    model_version: str


class FeedbackResult(msgspec.Struct):
    updated: int
    unknown_request_ids: list[str]
