"""``POST /explain``: the champion's prediction for a ticket and which of its words pushed it to
its label and to the runner-up (core/explain says how, per family). Explanations are not
logged as predictions (an agent asking why would count the ticket twice) and run one at a time
per worker on a lane of their own, so they never hold up /predict's threads. Their work is
bounded twice: each explanation's (core/explain caps the spans occlusion removes and scores them
in chunks) and the queue's: beyond ``EXPLAIN_QUEUE`` waiting, a request is refused at once with
503 and ``Retry-After`` instead of piling up."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from litestar import post
from litestar.exceptions import HTTPException
from litestar.params import Parameter

from core.explain import explain
from serving import metrics
from serving.errors import bad_request, unavailable
from serving.predict import validate_tickets
from serving.schemas import Ticket
from serving.state import ServiceState

logger = logging.getLogger("tickets.serving")
#: One explanation at a time per worker: they are CPU-bound Python, and more in parallel would
#: only queue for the interpreter while taking threads /predict needs.
EXPLAIN_LIMITER = anyio.CapacityLimiter(1)
#: Explanations that may wait for the one running; more are refused (503, Retry-After).
EXPLAIN_QUEUE = 1


@post("/explain", status_code=200, summary="Classify a ticket and show which words decided it")
async def explain_ticket(
    data: Ticket,
    state: ServiceState,
    top_k: int = Parameter(default=10, ge=1, le=50, description="Words shown per class."),
) -> dict[str, Any]:
    """For the predicted class and the runner-up: each word's signed contribution, the top
    ``top_k`` words, what is not a word (dense blocks, unplaced n-grams), the intercept, and the
    share of the score the shown words explain."""
    if data.true_label is not None:
        raise bad_request("true_label: /explain takes no label; send labels to /feedback")
    (ticket,) = validate_tickets([data], state.settings.serving.max_text_chars)
    served = state.served_model()
    if EXPLAIN_LIMITER.statistics().tasks_waiting >= EXPLAIN_QUEUE:
        metrics.EXPLAIN_REFUSED.inc()
        raise unavailable("too many explanations at once; try again shortly", retry_after_s=2)

    settings = state.settings
    short, notes = ticket.short_description, ticket.close_notes or ""

    def compute() -> dict[str, Any]:
        if settings.serving.explain_isolation == "process":
            arguments = (settings, served.bundle_id, served.manifest_sha256, short, notes, top_k)
            return state.explain_process.run(*arguments)
        result = explain(served.model, short, notes, top_k)
        return {"model_version": served.version, "family": served.manifest.family} | (
            result.as_dict()
        )

    try:
        return await anyio.to_thread.run_sync(compute, limiter=EXPLAIN_LIMITER)
    except HTTPException:
        raise
    except Exception as exc:  # a model the explainer cannot read is our fault, not the client's
        logger.exception("explaining a ticket failed")
        raise unavailable(f"the explanation failed ({type(exc).__name__})") from exc
