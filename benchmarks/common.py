"""Shared helpers for the benchmarks: the datasets under ../shared/data and JSON output."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.data.tables import LABEL, NOTES, SHORT

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TICKETS_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
IT_TICKETS = SHARED_DATA / "it_tickets_grp.csv"
BANKING_TRAIN = SHARED_DATA / "banking77_train.csv"
BANKING_TEST = SHARED_DATA / "banking77_test.csv"
#: Real Spanish help-desk requests (a university's): the set Spanish quality is measured on.
ES_UNLU = SHARED_DATA / "es_unlu_train.csv"
IT_MIN_GROUP = 100


def it_tickets_table() -> pd.DataFrame:
    """IT tickets as documented in ../shared/data/README.md: duplicate texts dropped, groups with
    fewer than 100 tickets merged into ``other``."""
    frame = pd.read_csv(IT_TICKETS, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame = frame.drop_duplicates(subset=["Short description", "Description"]).reset_index(
        drop=True
    )
    frame = frame[(frame["Short description"].str.strip() + frame["Description"].str.strip()) != ""]
    counts = frame["Assignment group"].value_counts()
    small = counts[counts < IT_MIN_GROUP].index
    frame.loc[frame["Assignment group"].isin(small), "Assignment group"] = "other"
    return frame.reset_index(drop=True)


def es_unlu_table() -> pd.DataFrame:
    """The Spanish help-desk requests in the canonical columns (one text column: no notes)."""
    frame = pd.read_csv(ES_UNLU, dtype=str, keep_default_na=False, encoding="utf-8")
    return canonical(frame, "consulta", None, "categoría")


def canonical(frame: pd.DataFrame, short: str, notes: str | None, label: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            SHORT: frame[short].astype(str).to_numpy(dtype=object),
            NOTES: (frame[notes].astype(str) if notes else pd.Series([""] * len(frame))).to_numpy(
                dtype=object
            ),
            LABEL: frame[label].astype(str).to_numpy(dtype=object),
        }
    )


def save(name: str, payload: dict[str, Any]) -> Path:
    """Print the JSON and write it to benchmarks/results/<name>.json."""
    payload = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **payload,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    text = json.dumps(payload, indent=2, default=str)
    path.write_text(text + "\n")
    print(text)
    sys.stdout.flush()
    return path
