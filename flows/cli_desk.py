"""``tickets label-queue|feedback|audit-labels``: learning from the help desk. Which tickets to
label next (the same choice as ``GET /labeling/queue``), their labels back from the filled-in
file, and which training labels look wrong."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.io.store import ArtifactStore
    from core.release.manifest import Manifest
    from core.settings import Settings

COMMANDS = ("label-queue", "audit-labels", "feedback")


def add_commands(commands: Any) -> None:
    queue = commands.add_parser("label-queue", help="write the tickets to label next to a file")
    queue.add_argument("--n", type=int, default=50, help="how many tickets (default 50)")
    queue.add_argument("--out", required=True, help="CSV to write (fill in true_label)")
    queue.add_argument("--window", default="7d", help="how far back to look (default 7d)")

    feedback = commands.add_parser("feedback", help="store the true labels filled into a file")
    feedback.add_argument(
        "--file", required=True, help="CSV with request_id and true_label (label-queue's output)"
    )

    audit = commands.add_parser("audit-labels", help="training labels that look wrong")
    audit.add_argument("--version", help="model version or bundle id (default: the champion)")
    audit.add_argument("--out", help="also write every suspect to this CSV")
    audit.add_argument("--top", type=int, default=20, help="how many to print (default 20)")
    audit.add_argument("--json", action="store_true")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "label-queue":
        return _label_queue(settings, args.n, Path(args.out), args.window)
    if args.command == "feedback":
        return _feedback_file(settings, Path(args.file))
    return _audit_labels(settings, args.version, args.out, args.top, args.json)


def _label_queue(settings: Settings, n: int, out: Path, window: str) -> int:
    import pandas as pd

    from core.data.cells import neutralised_frame
    from core.errors import InputError
    from core.io.store import open_store
    from core.monitoring.labeling import queue_from_log
    from core.predlog import open_prediction_log, window_start

    if not 1 <= n <= 100_000:
        raise InputError(f"--n: {n} is not between 1 and 100000")
    manifest = _model_manifest(open_store(settings), None)
    since = window_start(window, longest=settings.monitoring_max_window)
    with open_prediction_log(settings) as log:
        entries, pool = queue_from_log(log, manifest, since, n, pool=max(5000, 20 * n))
    frame = pd.DataFrame([entry.as_dict() for entry in entries])
    if frame.empty:
        frame = pd.DataFrame(columns=["request_id", "short_description", "prediction", "reason"])
    frame["true_label"] = ""
    out.parent.mkdir(parents=True, exist_ok=True)
    neutralised_frame(frame).to_csv(out, index=False)
    print(
        f"wrote {len(entries)} tickets to label (of {pool} unlabelled since {since[:16]}) to "
        f"{out}; fill in true_label, then: tickets feedback --file {out}"
    )
    return 0


def _model_manifest(store: ArtifactStore, version: str | None) -> Manifest:
    """Model ``version``'s manifest, or the champion's; a one-line error when there is none."""
    from core.errors import InputError
    from core.release.bundle import read_champion, read_manifest
    from core.release.snapshots import find_manifest

    if version is not None:
        return find_manifest(store, version)
    pointer, _ = read_champion(store)
    if pointer is None:
        raise InputError("no champion model yet: train one first (tickets train)")
    return read_manifest(store, pointer.bundle_id, pointer.manifest_file_sha256)


def _feedback_file(settings: Settings, path: Path) -> int:
    """The labels of a filled-in label-queue file, stored like ``POST /feedback`` stores them
    (the same rules for a label). The file is read as the intake reads tables (any delimiter,
    UTF-8, UTF-16 or Windows-1252, .xlsx); cells the queue wrote neutralised for spreadsheets are
    read back as they were. Every row is checked before any is written: a bad row stops the
    command naming it, with nothing stored. Rows left without a label are skipped."""
    from core.data.cells import restored
    from core.data.reading import read_table
    from core.data.validation import require_label, require_text
    from core.errors import InputError
    from core.predlog import open_prediction_log

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    frame, _ = read_table(str(path), settings)
    missing = sorted({"request_id", "true_label"} - set(frame.columns))
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; the file has {list(frame.columns)}")
    pairs, skipped = [], 0
    for number, (request_id, label) in enumerate(
        zip(frame["request_id"], frame["true_label"], strict=True), start=1
    ):
        if not str(label).strip():
            skipped += 1
            continue
        try:
            pairs.append(
                (
                    require_text(restored(str(request_id)), "request_id", 200),
                    require_label(restored(str(label)), "true_label"),
                )
            )
        except InputError as exc:
            raise InputError(f"{path}: row {number}: {exc}") from exc
    with open_prediction_log(settings) as log:
        unknown = log.add_feedback(pairs)
    print(
        f"{len(pairs) - len(unknown)} labels stored from {path}; {skipped} rows without a label "
        "skipped" + (f"; unknown request ids: {unknown[:10]}" if unknown else "")
    )
    return 0


def _audit_labels(
    settings: Settings, version: str | None, out: str | None, top: int, as_json: bool
) -> int:
    import pandas as pd

    from core.io.store import open_store
    from core.training.label_audit import read_audit

    store = open_store(settings)
    manifest = _model_manifest(store, version)
    suspects = read_audit(store, manifest.bundle_id)
    rows = [suspect.as_dict() for suspect in suspects]
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out, index=False)
    if as_json:
        print(json.dumps({"model_version": manifest.model_version, "suspects": rows}))
        return 0
    excluded = "left out of its refit" if manifest.suspected_labels_excluded else "kept in training"
    print(
        f"model {manifest.model_version}: {len(suspects)} training rows look mislabelled "
        f"({excluded}; TICKETS_EXCLUDE_SUSPECTED_LABELS decides)"
    )
    for suspect in suspects[:top]:
        text = suspect.short_description[:60]
        print(
            f"  row {suspect.row:>6} [{suspect.source}] {suspect.given} -> {suspect.suggested} "
            f"({suspect.given_probability:.2f} vs {suspect.suggested_probability:.2f})  {text}"
        )
    if out:
        print(f"all {len(suspects)} written to {out}")
    return 0
