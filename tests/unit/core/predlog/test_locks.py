"""Named leases in the operational database: one holder at a time, taken over once the holder
stops renewing (or, on this host, once its process is gone), and known to ``lock_holder``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from core.predlog import PredictionLog


def test_a_lock_has_one_holder_until_released(tmp_path: Path) -> None:
    with PredictionLog(tmp_path / "log.db") as log:
        assert log.try_lock("promo", "a", "promoting x", 30) is None
        taken = log.try_lock("promo", "b", "promoting y", 30)
        assert taken is not None and taken.holder == "a" and taken.purpose == "promoting x"
        assert log.lock_holder("promo") == taken
        assert log.try_lock("promo", "a", "promoting x", 30) is None  # its own: renewed
        assert log.renew_lock("promo", "a", 30) and not log.renew_lock("promo", "b", 30)
        log.release_lock("promo", "b")  # not b's to release
        assert log.lock_holder("promo") is not None
        log.release_lock("promo", "a")
        assert log.lock_holder("promo") is None
        assert log.try_lock("promo", "b", "promoting y", 30) is None


def test_a_lease_that_is_not_renewed_runs_out(tmp_path: Path) -> None:
    with PredictionLog(tmp_path / "log.db") as log:
        assert log.try_lock("promo", "a", "promoting x", 0.2) is None
        assert log.try_lock("promo", "b", "promoting y", 30) is not None
        time.sleep(0.3)
        assert log.lock_holder("promo") is None
        assert log.try_lock("promo", "b", "promoting y", 30) is None


def test_a_lock_of_a_process_of_this_host_that_died_is_free_at_once(tmp_path: Path) -> None:
    """A holder killed with SIGKILL never releases: its process being gone frees the lock."""
    script = (
        "import sys; from pathlib import Path; from core.predlog import PredictionLog\n"
        "with PredictionLog(Path(sys.argv[1])) as log:\n"
        "    assert log.try_lock('promo', 'child', 'promoting z', 3600) is None\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "log.db")], check=True)
    with PredictionLog(tmp_path / "log.db") as log:
        assert log.lock_holder("promo") is None  # its hour-long lease notwithstanding
        assert log.try_lock("promo", "b", "promoting y", 30) is None
