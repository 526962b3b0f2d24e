"""Webhook ids, claimed before their work is done: shared by every process that opens the same
log, so a delivery is worked on once across workers, and a sender's retry with the same id is
recognised for a week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from core.predlog.dialect import Dialect, Tables

WEBHOOK_ID_RETENTION = timedelta(days=7)
"""How long a webhook id is remembered: senders retry with the same id for about a day."""


class Claim(StrEnum):
    """What ``claim_webhook`` found: the id is now ours, was done before, or is being worked on
    by someone whose lease has not run out."""

    CLAIMED = "claimed"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"


def finish_claim(cursor: Any, dialect: Dialect, webhook_id: str) -> None:
    """Mark a claimed id done inside the caller's transaction."""
    cursor.execute(
        dialect.sql("UPDATE webhook_ids SET state = 'done' WHERE webhook_id = ?"), (webhook_id,)
    )


class WebhookClaims(Tables):
    """Claims on webhook ids."""

    def claim_webhook(self, webhook_id: str, lease_s: float = 300) -> Claim:
        """Claim a webhook id before doing its work: DUPLICATE when its work was done,
        IN_PROGRESS while someone else's lease runs, else CLAIMED (new, or a lease that ran out,
        so a crash between claim and work does not lose the work for good)."""
        now = datetime.now(UTC)
        expired = (now - WEBHOOK_ID_RETENTION).isoformat(timespec="microseconds")
        lease_until = (now + timedelta(seconds=lease_s)).isoformat(timespec="microseconds")
        stamp = now.isoformat(timespec="microseconds")
        insert = (
            "INSERT INTO webhook_ids (webhook_id, received_at, state, lease_until) "
            "VALUES (?, ?, 'claimed', ?) ON CONFLICT DO NOTHING"
        )
        select = "SELECT state, lease_until FROM webhook_ids WHERE webhook_id = ?"
        with self._write() as cursor:
            cursor.execute(self._sql("DELETE FROM webhook_ids WHERE received_at < ?"), (expired,))
            cursor.execute(self._sql(insert), (webhook_id, stamp, lease_until))
            if cursor.rowcount == 1:
                return Claim.CLAIMED
            cursor.execute(self._sql(select + self.dialect.for_update), (webhook_id,))
            state, current_lease = cursor.fetchone()
            if state == "done":
                return Claim.DUPLICATE
            if current_lease is not None and str(current_lease) > stamp:
                return Claim.IN_PROGRESS
            cursor.execute(
                self._sql("UPDATE webhook_ids SET lease_until = ? WHERE webhook_id = ?"),
                (lease_until, webhook_id),
            )
            return Claim.CLAIMED

    def finish_webhook(self, webhook_id: str) -> None:
        """Mark a claimed id done: from now on a delivery with it is a duplicate."""
        with self._write() as cursor:
            finish_claim(cursor, self.dialect, webhook_id)

    def release_webhook(self, webhook_id: str) -> None:
        """Forget a claimed id whose work failed, so the sender's retry is accepted."""
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM webhook_ids WHERE webhook_id = ? AND state = 'claimed'"),
                (webhook_id,),
            )

    def forget_old_webhook_ids(self) -> int:
        expired = (datetime.now(UTC) - WEBHOOK_ID_RETENTION).isoformat(timespec="microseconds")
        with self._write() as cursor:
            cursor.execute(self._sql("DELETE FROM webhook_ids WHERE received_at < ?"), (expired,))
            return int(cursor.rowcount)
