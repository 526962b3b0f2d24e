"""Named locks whose holder is known, and known dead: leases in the operational database.

The promotion lock used to be a Prefect concurrency slot, whose lease lives in the memory of the
Prefect server that granted it; ``tickets train`` runs a Prefect server of its own, so a training
killed while promoting took the lease's keeper with it and the slot stayed taken for good. Here
a lock is a row (name, holder, host, process, purpose, expiry) in the database every process of
the system already shares (SQLite beside the store, or PostgreSQL): its holder renews the expiry
while it works, and a holder that stops renewing (killed, frozen, its machine gone) loses the
lock when it expires. On the same host a holder whose process no longer exists loses it at
once. ``lock_holder`` says who holds it, for ``tickets status``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.predlog.dialect import Tables


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, since when, for what, and until when unless they renew it."""

    name: str
    holder: str
    host: str
    pid: int
    purpose: str
    acquired_at: str
    expires_at: str

    def describe(self) -> str:
        return (
            f"{self.name}: held by process {self.pid} on {self.host} ({self.purpose}) since "
            f"{self.acquired_at}, until {self.expires_at} unless renewed"
        )


COLUMNS = "name, holder, host, pid, purpose, acquired_at, expires_at"


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def process_alive(pid: int) -> bool:
    """Whether a process of this host with ``pid`` exists (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(row: tuple[object, ...]) -> LockHolder:
    name, holder, host, pid, purpose, acquired_at, expires_at = row
    return LockHolder(
        str(name),
        str(holder),
        str(host),
        int(str(pid)),
        str(purpose),
        str(acquired_at),
        str(expires_at),
    )


class LeaseLocks(Tables):
    """Reads and writes of the locks table."""

    def try_lock(self, name: str, holder: str, purpose: str, ttl_s: float) -> LockHolder | None:
        """Take ``name`` for ``holder`` (None: taken), or the current holder (not taken). An
        expired lease, or one held by a process of this host that no longer exists, is taken
        over. Taking it again as its own holder renews it."""
        now = _now()
        host, pid = socket.gethostname(), os.getpid()
        mine = (
            name,
            holder,
            host,
            pid,
            purpose,
            _stamp(now),
            _stamp(now + timedelta(seconds=ttl_s)),
        )
        with self._write() as cursor:
            cursor.execute(
                self._sql(f"SELECT {COLUMNS} FROM locks WHERE name = ?{self.dialect.for_update}"),
                (name,),
            )
            row = cursor.fetchone()
            if row is not None:
                current = _holder(row)
                dead = current.host == host and not process_alive(current.pid)
                if current.holder != holder and current.expires_at > _stamp(now) and not dead:
                    return current
                cursor.execute(self._sql("DELETE FROM locks WHERE name = ?"), (name,))
            placeholders = ", ".join("?" * 7)
            cursor.execute(
                self._sql(f"INSERT INTO locks ({COLUMNS}) VALUES ({placeholders})"), mine
            )
        return None

    def renew_lock(self, name: str, holder: str, ttl_s: float) -> bool:
        """Push the expiry of our lease on ``name`` on; False when it is no longer ours."""
        expires = _stamp(_now() + timedelta(seconds=ttl_s))
        with self._write() as cursor:
            cursor.execute(
                self._sql("UPDATE locks SET expires_at = ? WHERE name = ? AND holder = ?"),
                (expires, name, holder),
            )
            return int(cursor.rowcount) == 1

    def release_lock(self, name: str, holder: str) -> None:
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM locks WHERE name = ? AND holder = ?"), (name, holder)
            )

    def lock_holder(self, name: str) -> LockHolder | None:
        """The live holder of ``name``, or None when it is free (or its lease ran out)."""
        with self._read() as cursor:
            cursor.execute(self._sql(f"SELECT {COLUMNS} FROM locks WHERE name = ?"), (name,))
            row = cursor.fetchone()
        if row is None:
            return None
        current = _holder(row)
        if current.expires_at <= _stamp(_now()):
            return None
        if current.host == socket.gethostname() and not process_alive(current.pid):
            return None
        return current
