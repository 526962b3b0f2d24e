"""Retrain decisions: each one decided from the earlier ones and stored in the same transaction
(the policy itself is core/monitoring/retraining.py), and the outcome of a requested retrain."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from core.predlog.dialect import Tables
from core.predlog.predictions import utc_now
from core.records import RetrainDecision

DECISION_COLUMNS = (
    "decision_id",
    "decided_at",
    "model_version",
    "fired",
    "action",
    "reason",
    "source",
    "next_allowed_at",
    "outcome",
)


def _decision(row: Sequence[Any]) -> RetrainDecision:
    decision_id, decided_at, version, fired, action, reason, source, next_at, outcome = row
    return RetrainDecision(
        str(decision_id),
        str(decided_at),
        str(version),
        tuple(json.loads(fired)),
        str(action),
        str(reason),
        str(source),
        next_at,
        outcome,
    )


class RetrainDecisions(Tables):
    """Reads and writes of the retrain_decisions table."""

    def record_decision(
        self,
        decide: Callable[[list[RetrainDecision]], RetrainDecision],
        model_version: str | None = None,
        since: str | None = None,
    ) -> RetrainDecision:
        """Decide from the earlier decisions (of ``model_version``, since ``since``) and store
        the decision, in one transaction: two monitors deciding at once cannot both retrain."""
        where, params = "1 = 1", []
        if model_version is not None:
            where += " AND model_version = ?"
            params.append(model_version)
        if since is not None:
            where += " AND decided_at >= ?"
            params.append(since)
        select = f"SELECT {', '.join(DECISION_COLUMNS)} FROM retrain_decisions WHERE {where}"
        placeholders = ", ".join("?" * len(DECISION_COLUMNS))
        insert = (
            f"INSERT INTO retrain_decisions ({', '.join(DECISION_COLUMNS)}) VALUES ({placeholders})"
        )
        with self._write() as cursor:
            self.dialect.lock_table(cursor, "retrain_decisions")
            cursor.execute(self._sql(select), params)
            history = [_decision(row) for row in cursor.fetchall()]
            decision = decide(history)
            cursor.execute(
                self._sql(insert),
                (
                    decision.decision_id,
                    decision.decided_at,
                    decision.model_version,
                    decision.fired_json(),
                    decision.action,
                    decision.reason,
                    decision.source,
                    decision.next_allowed_at,
                    decision.outcome,
                ),
            )
        return decision

    def record_outcome(self, decision_id: str, outcome: str) -> None:
        """How a requested retrain ended: promoted, not promoted or failed."""
        with self._write() as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE retrain_decisions SET outcome = ?, outcome_at = ? WHERE decision_id = ?"
                ),
                (outcome, utc_now(), decision_id),
            )

    def forget_decision(self, decision_id: str) -> None:
        """Drop a decision whose request never reached Prefect, so the sender's retry counts."""
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM retrain_decisions WHERE decision_id = ?"), (decision_id,)
            )

    def decisions(self, since: str | None = None) -> list[RetrainDecision]:
        """Retrain decisions, oldest first."""
        where, params = ("decided_at >= ?", [since]) if since else ("1 = 1", [])
        sql = (
            f"SELECT {', '.join(DECISION_COLUMNS)} FROM retrain_decisions WHERE {where} "
            "ORDER BY decided_at"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            return [_decision(row) for row in cursor.fetchall()]

    def delete_decisions_before(self, cutoff: str) -> int:
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM retrain_decisions WHERE decided_at < ?"), (cutoff,)
            )
            return int(cursor.rowcount)
