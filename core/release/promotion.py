"""Promotion, all of it: the rule (``decide_promotion``: margin and paired bootstrap on the same
rows), the compare-and-set swap (``promote_if_better``), the outcome, the record the history
keeps, and the sequence, in the order that makes every crash repairable:

1. the bundle (model file, then the manifest that vouches for it) is already written;
2. the MLflow ``champion`` alias is brought in line with the champion pointer (repairing a
   promotion that died between steps 3 and 4);
3. the challenger is judged and, if it wins, the pointer moves (compare-and-set);
4. the alias follows the pointer.

A crash after 1 leaves an unreferenced bundle (the maintenance deletes it); after 3 a pointer
the alias lags behind, which the next promotion's step 2 repairs; a rerun of the same promotion
finds "already champion" and repairs the alias too. The pointer is the truth. Callers hold the
promotion lock around all of it (tasks/publishing.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.data.tables import LABEL, NOTES, SHORT, TEXT
from core.errors import BundleError, PromotionError, StoreError
from core.io.store import ArtifactStore, open_store
from core.metrics import macro_f1_replicates
from core.records import PromotionRecord
from core.release import registry
from core.release.bundle import load_bundle, read_champion, swap_champion
from core.release.manifest import ChampionPointer, Manifest, PointerDecision
from core.release.snapshots import read_snapshot
from core.settings import Settings

#: The reason of a promotion found done whose pointer kept no decision (nothing to announce).
ALREADY_CHAMPION = "already champion"


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


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_macro_f1: float
    champion_macro_f1: float | None
    gain: float | None = None
    gain_ci: tuple[float, float] | None = None
    evaluation_rows: int = 0


def decide_promotion(
    truth: Sequence[str],
    challenger: Sequence[str],
    champion: Sequence[str] | None,
    margin: float,
    seed: int,
    rounds: int = 1000,
    confidence: float = 0.95,
) -> PromotionDecision:
    """Promote the first model always; later ones only when, on the same evaluation rows, the
    macro-F1 gain reaches ``margin`` and the paired-bootstrap interval of the gain excludes 0."""
    if champion is None:
        alone = macro_f1_replicates(truth, [challenger], 0, seed)[0, 0]
        return PromotionDecision(
            True, "no champion yet", float(alone), None, None, None, len(truth)
        )
    scores = macro_f1_replicates(truth, [challenger, champion], rounds, seed)
    challenger_f1, champion_f1 = (float(v) for v in scores[0])
    gains = scores[1:, 0] - scores[1:, 1]
    tail = (1 - confidence) / 2 * 100
    low, high = (float(v) for v in np.percentile(gains, [tail, 100 - tail]))
    gain = challenger_f1 - champion_f1
    promote = gain >= margin and low > 0
    if promote:
        verdict = "meets the margin and the interval excludes 0"
    elif gain < margin:
        verdict = f"is below the margin {margin}"
    else:
        verdict = "meets the margin but the interval includes 0 (could be noise)"
    reason = (
        f"macro-F1 {challenger_f1:.4f} vs champion {champion_f1:.4f} on {len(truth)} rows: "
        f"gain {gain:+.4f} ({confidence:.0%} CI {low:+.4f} to {high:+.4f}) {verdict}"
    )
    return PromotionDecision(
        promote, reason, challenger_f1, champion_f1, gain, (low, high), len(truth)
    )


@dataclass(frozen=True)
class PromotionOutcome:
    promoted: bool
    reason: str
    champion_bundle_id: str | None
    challenger_macro_f1: float
    champion_macro_f1: float | None
    gain: float | None = None
    gain_ci: tuple[float, float] | None = None
    evaluation_rows: int = 0
    champion_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict_labels(model: Any, rows: pd.DataFrame) -> list[str]:
    probabilities = np.asarray(model.predict_proba(rows[TEXT]))
    classes = np.asarray(model.classes_, dtype=object)
    return [str(label) for label in classes[probabilities.argmax(axis=1)]]


def _current_champion(store: ArtifactStore) -> tuple[ChampionPointer | None, str | None]:
    """The pointer and its token; only a pointer that does not exist means "no champion"."""
    try:
        return read_champion(store)
    except (BundleError, StoreError) as exc:
        raise PromotionError(
            f"promotion refused: the current champion pointer cannot be read ({exc}); "
            "repair or roll back champion.json, then promote again"
        ) from exc


def _load_champion(store: ArtifactStore, pointer: ChampionPointer) -> tuple[Any, Manifest]:
    try:
        return load_bundle(store, pointer.bundle_id, pointer.manifest_file_sha256)
    except (BundleError, StoreError) as exc:
        raise PromotionError(
            f"promotion refused: the current champion {pointer.bundle_id} cannot be loaded "
            f"({exc}); repair its bundle or roll the pointer back, then promote again"
        ) from exc


def row_keys(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """What identifies a ticket across tables: its texts, whitespace-normalised."""
    notes = rows[NOTES].fillna("") if NOTES in rows else pd.Series([""] * len(rows))
    return [
        (" ".join(str(short).split()), " ".join(str(note).split()))
        for short, note in zip(rows[SHORT].fillna(""), notes, strict=True)
    ]


def unseen_by(
    store: ArtifactStore, champion: Manifest, evaluation_set: pd.DataFrame
) -> tuple[np.ndarray, str]:
    """Which evaluation rows the champion did not train on (a boolean mask) and a note. The
    challenger never trained on its own evaluation rows; the champion may have, when the table
    changed since it was trained (a split of a larger table puts some of its training rows in
    the new test split), and a model scored on its own training rows looks better than it is.
    Its training rows are read from the data snapshot its manifest names; without one, every
    row counts, and the note says so."""
    everything = np.ones(len(evaluation_set), dtype=bool)
    if champion.data_snapshot is None:
        return everything, "the champion names no training table: all rows used"
    try:
        seen, _ = read_snapshot(store, champion.data_snapshot)
    except (BundleError, StoreError) as exc:
        return everything, f"the champion's training table is unreadable ({exc}): all rows used"
    trained = set(row_keys(seen))
    mask = np.asarray([key not in trained for key in row_keys(evaluation_set)], dtype=bool)
    left_out = int((~mask).sum())
    if not left_out:
        return mask, "no evaluation row was in the champion's training table"
    return mask, f"{left_out} evaluation rows left out: the champion trained on them"


def promote_if_better(
    store: ArtifactStore,
    manifest: Manifest,
    challenger: Any,
    evaluation_set: pd.DataFrame,
    margin: float,
    seed: int,
    attempts: int = 5,
) -> PromotionOutcome:
    """Score challenger and champion on the same evaluation rows and swap the pointer when the
    challenger wins (margin and paired bootstrap). The swap is a compare-and-set: when another
    promotion moved the pointer meanwhile, the challenger is judged again against the new
    champion, so racing promotions end with one champion, the better one. Idempotent.

    Fails safe: a champion pointer or bundle that cannot be read raises PromotionError instead of
    counting as "no champion", which would promote the challenger without comparison."""
    truth = np.asarray(evaluation_set[LABEL].astype(str).tolist(), dtype=object)
    challenger_labels = np.asarray(predict_labels(challenger, evaluation_set), dtype=object)
    for _ in range(attempts):
        pointer, token = _current_champion(store)
        current_id = pointer.bundle_id if pointer else None
        if current_id == manifest.bundle_id:
            assert pointer is not None
            return already_champion(pointer)
        if pointer is None:
            decision = decide_promotion(list(truth), list(challenger_labels), None, margin, seed)
            reason = decision.reason
        else:
            model, champion = _load_champion(store, pointer)
            unseen, note = unseen_by(store, champion, evaluation_set)
            if not unseen.any():
                decision = PromotionDecision(
                    False,
                    f"no evaluation row that neither model trained on ({note}): the champion "
                    "is kept",
                    float("nan"),
                    None,
                )
            else:
                champion_labels = predict_labels(model, evaluation_set[unseen])
                decision = decide_promotion(
                    list(truth[unseen]),
                    list(challenger_labels[unseen]),
                    champion_labels,
                    margin,
                    seed,
                )
            reason = f"{decision.reason}; champion {pointer.bundle_id}; {note}"
        outcome = PromotionOutcome(
            decision.promote,
            reason,
            current_id,
            decision.challenger_macro_f1,
            decision.champion_macro_f1,
            decision.gain,
            decision.gain_ci,
            decision.evaluation_rows,
            pointer.model_version if pointer else None,
        )
        if not decision.promote:
            return outcome
        kept = PointerDecision(
            reason=reason,
            previous_bundle_id=current_id,
            previous_model_version=outcome.champion_version,
            challenger_macro_f1=outcome.challenger_macro_f1,
            champion_macro_f1=outcome.champion_macro_f1,
            gain=outcome.gain,
            gain_ci=outcome.gain_ci,
            evaluation_rows=outcome.evaluation_rows,
        )
        if swap_champion(store, manifest, token, kept):
            return outcome
    raise BundleError("the champion pointer kept changing during promotion; try again")


def already_champion(pointer: ChampionPointer) -> PromotionOutcome:
    """The outcome of a promotion found already done (a retry after the pointer moved): the
    decision the pointer kept, so the retry records and announces what was decided. A pointer
    without one (written by hand, or by an older version) says so and is not announced."""
    kept = pointer.decision
    if kept is None:
        return PromotionOutcome(True, ALREADY_CHAMPION, pointer.bundle_id, float("nan"), None)
    return PromotionOutcome(
        True,
        kept.reason,
        kept.previous_bundle_id,
        kept.challenger_macro_f1,
        kept.champion_macro_f1,
        kept.gain,
        kept.gain_ci,
        kept.evaluation_rows,
        kept.previous_model_version,
    )


def promotion_record(
    manifest: Manifest, outcome: PromotionOutcome, decided_at: str
) -> PromotionRecord:
    """The decision as the log's history keeps it and the promotion event carries it."""
    return PromotionRecord(
        decided_at=decided_at,
        challenger=manifest.bundle_id,
        challenger_version=manifest.mlflow.model_version,
        champion=outcome.champion_bundle_id,
        champion_version=outcome.champion_version,
        challenger_macro_f1=outcome.challenger_macro_f1,
        champion_macro_f1=outcome.champion_macro_f1,
        gain=outcome.gain,
        gain_ci=outcome.gain_ci,
        promoted=outcome.promoted,
        reason=outcome.reason,
    )
