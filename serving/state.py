"""The service's typed state: what ``create_app`` builds in its lifespan and handlers read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from core.predictions import PredictionLog, PredictionRecord
from core.settings import Settings
from serving.model_holder import ModelHolder, ServedModel

if TYPE_CHECKING:
    from serving.batcher import MicroBatcher
    from serving.schemas import LabelScore

    Scored = tuple[str, list[LabelScore]]

#: Seconds a client should wait before retrying a 503 of ours.
RETRY_AFTER_S = 5


def unavailable(detail: str, retry_after_s: int = RETRY_AFTER_S) -> HTTPException:
    """503 for our own faults, with ``Retry-After`` so clients and proxies back off."""
    return HTTPException(
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        detail=detail,
        headers={"Retry-After": str(retry_after_s)},
    )


def require_model(holder: ModelHolder) -> ServedModel:
    """The served model, or the one 503 that says none is loaded yet."""
    served = holder.current
    if served is None:
        raise unavailable("no model loaded yet")
    return served


class ServiceState(State):
    """Litestar builds one per request around the app's state dict (no copy), typed for handlers
    that declare ``state: ServiceState``."""

    settings: Settings
    holder: ModelHolder
    log: PredictionLog
    model_batcher: MicroBatcher[tuple[str, str], Scored]
    log_batcher: MicroBatcher[PredictionRecord, None]

    def served_model(self) -> ServedModel:
        return require_model(self.holder)
