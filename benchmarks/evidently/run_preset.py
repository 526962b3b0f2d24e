"""Runs Evidently's data-drift preset on a reference and a current Parquet file and prints one JSON
line: the seconds the report took (reading the files not counted) and what it found.

Runs inside Evidently's own environment (requirements.lock here), never the project's: it imports
nothing from the project. Called by benchmarks/drift.py:
``<env>/bin/python run_preset.py reference.parquet current.parquet``."""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

TEXT = ["short_description", "close_notes"]


def main(reference_path: str, current_path: str, with_text: bool) -> None:
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    definition = DataDefinition(
        numerical_columns=["confidence", "text_length"],
        categorical_columns=["prediction", "true_label"],
        text_columns=TEXT if with_text else [],
    )
    columns = [c for c in reference.columns if with_text or c not in TEXT]
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    result = snapshot.dict()
    seconds = time.perf_counter() - started
    drifted: dict[str, float] = next(
        (m["value"] for m in result["metrics"] if m["metric_name"].startswith("DriftedColumns")),
        {},
    )
    print(
        json.dumps(
            {
                "seconds": round(seconds, 3),
                "rows": len(current),
                "columns": columns,
                "drifted_columns": float(drifted.get("count", 0.0)),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:] == ["--text"])
