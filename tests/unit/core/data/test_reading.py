"""Reading tables: intake limits and delimiter sniffing (core/data/reading.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.data.reading import read_table, sniff_delimiter
from core.errors import DataError
from core.settings import Settings


def _limited(tmp_path: Path, **limits: int) -> Settings:
    return Settings(home=tmp_path, **{f"intake_max_{k}": v for k, v in limits.items()})  # type: ignore[arg-type]


def test_a_table_beyond_the_intake_limits_is_refused_naming_the_limit(tmp_path: Path) -> None:
    frame = pd.DataFrame({"short_description": [f"t{i}" for i in range(50)], "label": "a"})
    csv_path, jsonl_path = tmp_path / "t.csv", tmp_path / "t.jsonl"
    parquet_path, xlsx_path = tmp_path / "t.parquet", tmp_path / "t.xlsx"
    frame.to_csv(csv_path, index=False)
    frame.to_json(jsonl_path, orient="records", lines=True)
    frame.to_parquet(parquet_path)
    frame.to_excel(xlsx_path, index=False)
    for path in (csv_path, jsonl_path, parquet_path, xlsx_path):
        assert len(read_table(str(path), _limited(tmp_path, rows=50))[0]) == 50
        with pytest.raises(DataError, match=r"more than the 49 .*TICKETS_INTAKE_MAX_ROWS"):
            read_table(str(path), _limited(tmp_path, rows=49))
        with pytest.raises(DataError, match=r"columns is more than the 1 allowed"):
            read_table(str(path), _limited(tmp_path, columns=1))
        with pytest.raises(DataError, match=r"bytes is more than the 10 allowed.*MAX_BYTES"):
            read_table(str(path), _limited(tmp_path, bytes=10))


def test_a_workbook_that_inflates_beyond_the_limit_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bomb.xlsx"
    pd.DataFrame({"short_description": ["a" * 1000] * 2000, "label": "a"}).to_excel(
        path, index=False
    )
    size = path.stat().st_size
    with pytest.raises(DataError, match=r"decompresses to [\d,]+ bytes, more than"):
        read_table(str(path), _limited(tmp_path, bytes=4 * size))


def test_the_delimiter_is_sniffed_from_a_few_kilobytes_of_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv

    samples: list[str] = []
    sniff = csv.Sniffer.sniff

    def recording(
        self: csv.Sniffer, sample: str, delimiters: str | None = None
    ) -> type[csv.Dialect]:
        samples.append(sample)
        return sniff(self, sample, delimiters)

    monkeypatch.setattr(csv.Sniffer, "sniff", recording)
    rows = "".join(f"texto {i};más texto {i};grupo\n" for i in range(20_000))
    assert sniff_delimiter("short_description;close_notes;label\n" + rows) == ";"
    assert len(samples[0]) <= 4096 and samples[0].endswith("grupo"), "whole lines only"
