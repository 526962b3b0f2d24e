"""``tickets label-queue``: learning from the help desk. Which tickets to label next (the same
choice as ``GET /labeling/queue``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings

COMMANDS = ("label-queue",)


def add_commands(commands: Any) -> None:
    queue = commands.add_parser("label-queue", help="write the tickets to label next to a file")
    queue.add_argument("--n", type=int, default=50, help="how many tickets (default 50)")
    queue.add_argument("--out", required=True, help="CSV to write (fill in true_label)")
    queue.add_argument("--window", default="7d", help="how far back to look (default 7d)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    return _label_queue(settings, args.n, Path(args.out), args.window)


def _label_queue(settings: Settings, n: int, out: Path, window: str) -> int:
    import pandas as pd

    from core.errors import InputError
    from core.io.store import open_store
    from core.monitoring.labeling import queue_from_log
    from core.predlog import open_prediction_log, window_start
    from core.release.bundle import read_champion, read_manifest

    if not 1 <= n <= 100_000:
        raise InputError(f"--n: {n} is not between 1 and 100000")
    store = open_store(settings)
    pointer, _ = read_champion(store)
    if pointer is None:
        raise InputError("no champion model yet: train one first (tickets train)")
    manifest = read_manifest(store, pointer.bundle_id, pointer.manifest_file_sha256)
    since = window_start(window, longest=settings.monitoring_max_window)
    with open_prediction_log(settings) as log:
        entries, pool = queue_from_log(log, manifest, since, n, pool=max(5000, 20 * n))
    frame = pd.DataFrame([entry.as_dict() for entry in entries])
    if frame.empty:
        frame = pd.DataFrame(columns=["request_id", "short_description", "prediction", "reason"])
    frame["true_label"] = ""
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    print(
        f"wrote {len(entries)} tickets to label (of {pool} unlabelled since {since[:16]}) to "
        f"{out}; fill in true_label and send each to POST /feedback with its request_id"
    )
    return 0
