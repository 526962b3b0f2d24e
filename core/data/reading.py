"""Reading ticket tables as people export them: CSV with any of ``DELIMITERS`` in UTF-8 or
Windows-1252, .xlsx, Parquet and JSON Lines, local or s3://, every column as text, within the
intake limits. Errors name the file and the problem; core/data/tables.py validates what is read."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass

import pandas as pd

from core.errors import DataError, StoreError
from core.io.store import read_location
from core.settings import Settings


@dataclass(frozen=True)
class TableFormat:
    """How a table was read: the file format and, for text files, the encoding and delimiter
    that were detected (or forced)."""

    format: str
    encoding: str | None = None
    delimiter: str | None = None


#: Delimiters a spreadsheet export uses: comma, semicolon (Spanish locales), tab, pipe.
DELIMITERS = ",;\t|"
#: Encodings tried in order when none is forced: UTF-8 (with or without BOM), then Windows-1252
#: (Excel's "CSV" on a Spanish Windows), then Latin-1, which accepts any byte.
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
#: csv.Sniffer is superlinear in its sample (3k/6k/12k characters: 0.04/0.17/0.83 s); a few
#: kilobytes of whole lines decide the delimiter as well.
SNIFF_BYTES = 4 * 1024


@dataclass(frozen=True)
class IntakeLimits:
    """The most a table may hold: bytes read (and, for .xlsx, decompressed), rows, columns."""

    max_bytes: int
    max_rows: int
    max_columns: int

    @classmethod
    def of(cls, settings: Settings) -> IntakeLimits:
        return cls(settings.intake_max_bytes, settings.intake_max_rows, settings.intake_max_columns)

    def check(self, location: str, frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame.columns) > self.max_columns:
            raise DataError(
                f"{location}: {len(frame.columns):,} columns is more than the "
                f"{self.max_columns:,} allowed (TICKETS_INTAKE_MAX_COLUMNS)"
            )
        if len(frame) > self.max_rows:
            raise DataError(
                f"{location}: more than the {self.max_rows:,} rows allowed "
                "(TICKETS_INTAKE_MAX_ROWS)"
            )
        return frame


def read_table(
    location: str, settings: Settings, encoding: str | None = None
) -> tuple[pd.DataFrame, TableFormat]:
    """A table as people export it (CSV with any of ``DELIMITERS``, in UTF-8 or Windows-1252;
    .xlsx; Parquet; JSON Lines), local or s3://, every column as text; and how it was read.
    Tables beyond the intake limits (settings ``intake_max_*``) are refused, naming the limit."""
    limits = IntakeLimits.of(settings)
    try:
        data = read_location(location, settings, max_bytes=limits.max_bytes)
    except StoreError as exc:
        raise DataError(str(exc)) from exc
    if not data.strip():
        raise DataError(f"{location}: the file is empty")
    suffix = location.lower().rsplit(".", 1)[-1] if "." in location else ""
    if suffix in ("parquet", "pq"):
        return limits.check(location, _read_parquet(location, data, limits)), TableFormat("parquet")
    if suffix in ("xlsx", "xlsm"):
        return limits.check(location, _read_excel(location, data, limits)), TableFormat("xlsx")
    text, used = decode_text(location, data, encoding)
    if suffix in ("jsonl", "ndjson"):
        _check_lines(location, text, limits)
        return limits.check(location, _read_json_lines(location, text)), TableFormat("jsonl", used)
    delimiter = sniff_delimiter(text)
    _check_header(location, text, delimiter, limits)
    frame = _read_csv(location, text, delimiter, limits.max_rows + 1)
    return limits.check(location, frame), TableFormat("csv", used, delimiter)


def _check_lines(location: str, text: str, limits: IntakeLimits) -> None:
    """One JSON object per line: too many non-blank lines is too many rows (counted only when
    the newlines alone could be)."""
    if text.count("\n") < limits.max_rows:
        return
    if sum(1 for line in text.splitlines() if line.strip()) > limits.max_rows:
        raise DataError(
            f"{location}: more than the {limits.max_rows:,} rows allowed (TICKETS_INTAKE_MAX_ROWS)"
        )


def _check_header(location: str, text: str, delimiter: str, limits: IntakeLimits) -> None:
    """Refuse a header with too many columns before pandas builds them."""
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    if first.count(delimiter) < limits.max_columns:
        return
    columns = len(next(csv.reader([first], delimiter=delimiter), []))
    if columns > limits.max_columns:
        raise DataError(
            f"{location}: {columns:,} columns is more than the {limits.max_columns:,} allowed "
            "(TICKETS_INTAKE_MAX_COLUMNS)"
        )


def decode_text(location: str, data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The file's text and the encoding that read it: ``encoding`` if given, UTF-16 when the
    file starts with its byte-order mark (what spreadsheets save as "Unicode text"), else the
    first of ``ENCODINGS`` that decodes every byte."""
    if encoding is None and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise DataError(f"{location}: not UTF-16 text despite its byte-order mark") from exc
    for candidate in (encoding,) if encoding else ENCODINGS:
        try:
            return data.decode(candidate), _encoding_name(candidate)
        except UnicodeDecodeError as exc:
            if encoding:
                line = data[: exc.start].count(b"\n") + 1
                raise DataError(
                    f"{location}: not {encoding} text (invalid byte at line {line}); "
                    "check --encoding"
                ) from exc
        except LookupError as exc:
            raise DataError(f"{location}: unknown encoding {encoding!r}") from exc
    raise DataError(f"{location}: cannot decode the file")  # latin-1 decodes any byte


def _encoding_name(codec: str) -> str:
    return {"utf-8-sig": "utf-8", "cp1252": "windows-1252"}.get(codec.lower(), codec)


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV text among ``DELIMITERS``: csv.Sniffer on the first lines, else
    the candidate that splits the header into the most columns, else a comma."""
    sample = text[:SNIFF_BYTES].lstrip("\ufeff")
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _read_parquet(location: str, data: bytes, limits: IntakeLimits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    except Exception as exc:
        raise DataError(f"{location}: not a readable Parquet file ({exc})") from exc
    limits.check(location, pd.DataFrame(columns=range(metadata.num_columns)))
    if metadata.num_rows > limits.max_rows:
        raise DataError(
            f"{location}: {metadata.num_rows:,} rows is more than the {limits.max_rows:,} "
            "allowed (TICKETS_INTAKE_MAX_ROWS)"
        )
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise DataError(f"{location}: not a readable Parquet file ({exc})") from exc
    return frame.astype(object).where(frame.notna(), "")


def _read_excel(location: str, data: bytes, limits: IntakeLimits) -> pd.DataFrame:
    """An .xlsx is a zip: its declared uncompressed size is checked before anything inflates it
    (a few kilobytes can declare gigabytes)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise DataError(f"{location}: not a readable .xlsx workbook ({exc})") from exc
    if inflated > limits.max_bytes:
        raise DataError(
            f"{location}: the workbook decompresses to {inflated:,} bytes, more than the "
            f"{limits.max_bytes:,} allowed (TICKETS_INTAKE_MAX_BYTES)"
        )
    try:
        frame = pd.read_excel(
            io.BytesIO(data), dtype=str, engine="openpyxl", nrows=limits.max_rows + 1
        )
    except Exception as exc:
        raise DataError(f"{location}: not a readable .xlsx workbook ({exc})") from exc
    return frame.astype(object).where(frame.notna(), "")


def _read_json_lines(location: str, text: str) -> pd.DataFrame:
    try:
        frame = pd.read_json(io.StringIO(text), lines=True, dtype=False)
    except ValueError as exc:
        raise DataError(f"{location}: not readable JSON Lines ({exc})") from exc
    return frame.astype(object).where(frame.notna(), "").astype(str)


def _read_csv(location: str, text: str, delimiter: str, nrows: int | None = None) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            io.StringIO(text.lstrip("\ufeff")),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            nrows=nrows,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{location}: not a readable CSV file ({exc})") from exc
    return frame
