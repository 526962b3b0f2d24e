"""The promotion sequence, in the order that makes every crash repairable:

1. the bundle (model file, then the manifest that vouches for it) is already written;
2. the MLflow ``champion`` alias is brought in line with the champion pointer (repairing a
   promotion that died between steps 3 and 4);
3. the challenger is judged and, if it wins, the pointer moves (compare-and-set);
4. the alias follows the pointer.

A crash after 1 leaves an unreferenced bundle (the maintenance deletes it); after 3 a pointer
the alias lags behind, which the next promotion's step 2 repairs; a rerun of the same promotion
finds "already champion" and repairs the alias too. The pointer is the truth. Callers hold the
promotion lock around all of it (tasks/training.py)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.io.store import open_store
from core.release import registry
from core.release.manifest import Manifest
from core.settings import Settings
from core.training.refit import PromotionOutcome, promote_if_better


def promote_challenger(
    settings: Settings, manifest: Manifest, challenger: Any, evaluation_set: pd.DataFrame
) -> PromotionOutcome:
    store = open_store(settings)
    registry.align_champion_alias(settings, store)
    outcome = promote_if_better(
        store, manifest, challenger, evaluation_set, settings.promotion_margin, settings.seed
    )
    if outcome.promoted:
        registry.align_champion_alias(settings, store)
    return outcome
