"""The ``train`` flow: gather the rows, fan out one study per family and refit the winner,
then publish (MLflow, the bundle, promotion when it is better). The steps are in
flows/train_steps.py."""

from __future__ import annotations

from prefect import flow

from core.settings import Settings
from core.training.refit import TrainingSummary
from flows.train_steps import gather_rows, publish, search_and_refit
from tasks.store_block import resolve_settings


@flow(name="train", log_prints=True)
def train(
    settings: Settings | None = None,
    data_path: str | None = None,
    test_data_path: str | None = None,
    include_feedback: bool = False,
    reproduce: str | None = None,
) -> TrainingSummary:
    """Train every configured family and return the run's summary. With ``include_feedback``
    the feedback-labelled production tickets join both the training and the evaluation rows.
    With ``reproduce`` (a model version) the table and settings that made that model are used
    again, the studies search afresh, and the result is compared with it, never promoted."""
    rows = gather_rows(
        resolve_settings(settings), data_path, test_data_path, include_feedback, reproduce
    )
    fitted = search_and_refit(rows)
    return publish(rows, fitted, include_feedback)
