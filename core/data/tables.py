"""Validate and split ticket tables (core/data/reading.py reads them). Errors name the file, the
row and the problem."""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass

import pandas as pd

from core.data.reading import TableFormat, read_table
from core.errors import DataError
from core.settings import Settings

SHORT = "short_description"
NOTES = "close_notes"
LABEL = "label"
#: The text columns, in the order models read them.
TEXT = [SHORT, NOTES]
CANONICAL_COLUMNS = (SHORT, NOTES, LABEL)
_MAX_ROWS_NAMED = 5


@dataclass(frozen=True)
class DataReport:
    """What happened to the rows of one table on the way in."""

    source: str
    rows_read: int
    duplicates_dropped: int
    rows_kept: int
    classes: int
    format: str = "csv"
    encoding: str | None = None
    delimiter: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _name_rows(mask: pd.Series) -> str:
    rows = [str(i + 1) for i in mask[mask].index[:_MAX_ROWS_NAMED]]
    more = int(mask.sum()) - len(rows)
    return ", ".join(rows) + (f" and {more} more" if more > 0 else "")


def match_column(wanted: str, columns: list[object]) -> object | None:
    """The column called ``wanted``: the same name, else the same after Unicode NFC and trimming
    (an accent typed as a combining mark, a stray space in a spreadsheet header), else the same
    ignoring case when that names a single column."""
    if wanted in columns:
        return wanted

    def folded(name: object, casefold: bool) -> str:
        text = unicodedata.normalize("NFC", str(name)).strip().lstrip("\ufeff")
        return text.casefold() if casefold else text

    for casefold in (False, True):
        key = folded(wanted, casefold)
        matches = [column for column in columns if folded(column, casefold) == key]
        if len(matches) == 1:
            return matches[0]
    return None


def to_canonical(
    frame: pd.DataFrame, location: str, text_columns: tuple[str, ...], label_column: str | None
) -> pd.DataFrame:
    """Rename the configured columns to short_description, close_notes (and label)."""
    if frame.empty:
        raise DataError(f"{location}: the table has no rows")
    wanted = [*text_columns, *([label_column] if label_column else [])]
    found = {column: match_column(column, list(frame.columns)) for column in wanted}
    missing = [column for column, match in found.items() if match is None]
    if missing:
        raise DataError(
            f"{location}: missing column(s) {missing}; the file has {list(frame.columns)} "
            "(set --text-columns / --label-column)"
        )
    frame = frame.rename(columns={found[c]: c for c in wanted}).reset_index(drop=True)
    texts = frame[list(text_columns)].astype(str).apply(lambda col: col.str.strip())
    canonical = pd.DataFrame({SHORT: texts.iloc[:, 0]})
    notes = texts.iloc[:, 1:].agg(lambda row: " . ".join(v for v in row if v), axis=1)
    canonical[NOTES] = notes if len(text_columns) > 1 else ""
    empty = (canonical[SHORT] == "") & (canonical[NOTES] == "")
    if empty.any():
        raise DataError(f"{location}: empty text in row(s) {_name_rows(empty)} of {text_columns}")
    if label_column:
        labels = frame[label_column].astype(str).str.strip()
        blank = labels == ""
        if blank.any():
            raise DataError(f"{location}: empty {label_column!r} in row(s) {_name_rows(blank)}")
        canonical[LABEL] = labels
    return canonical


def prepare_training_table(
    frame: pd.DataFrame,
    location: str,
    settings: Settings,
    table_format: TableFormat | None = None,
) -> tuple[pd.DataFrame, DataReport]:
    """Validated canonical training table with exact duplicates dropped (and counted)."""
    canonical = to_canonical(frame, location, settings.text_columns, settings.label_column)
    deduplicated = canonical.drop_duplicates().reset_index(drop=True)
    counts = deduplicated[LABEL].value_counts()
    if len(counts) < 2:
        raise DataError(
            f"{location}: only one class ({counts.index[0]!r}) in {settings.label_column!r}; "
            "a classifier needs at least two"
        )
    needed = minimum_rows_per_class(settings)
    small = counts[counts < needed]
    if not small.empty:
        listed = ", ".join(f"{label!r} ({count})" for label, count in small.items())
        raise DataError(
            f"{location}: class(es) {listed} have fewer than {needed} rows, too few to split into "
            f"a test set and {settings.cv_folds} cross-validation folds; add rows or merge them"
        )
    report = DataReport(
        source=location,
        rows_read=len(canonical),
        duplicates_dropped=len(canonical) - len(deduplicated),
        rows_kept=len(deduplicated),
        classes=len(counts),
        **asdict(table_format or TableFormat("table")),
    )
    return deduplicated, report


def minimum_rows_per_class(settings: Settings) -> int:
    """Enough rows that a stratified test split still leaves ``cv_folds`` rows for CV."""
    return settings.cv_folds + 2


def prepare_test_table(
    frame: pd.DataFrame, location: str, settings: Settings, known_labels: set[str]
) -> pd.DataFrame:
    """Validated canonical test table whose labels were all seen in training."""
    canonical = to_canonical(frame, location, settings.text_columns, settings.label_column)
    unseen = sorted(set(canonical[LABEL]) - known_labels)
    if unseen:
        raise DataError(f"{location}: label(s) {unseen[:10]} never appear in the training data")
    return canonical


def split(frame: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified train/test split with the configured seed. (scikit-learn is imported here so
    that validating a table, which the CLI does before anything else, stays quick.)"""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        frame, test_size=settings.test_size, random_state=settings.seed, stratify=frame[LABEL]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def load_training_data(
    settings: Settings, location: str, test_location: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, DataReport]:
    """Train and test tables: a split of ``location``, or ``test_location`` as the test set."""
    table, table_format = read_table(location, settings, settings.data_encoding)
    frame, report = prepare_training_table(table, location, settings, table_format)
    if test_location is None:
        train, test = split(frame, settings)
        return train, test, report
    known = set(frame[LABEL])
    test_table, _ = read_table(test_location, settings, settings.data_encoding)
    test = prepare_test_table(test_table, test_location, settings, known)
    return frame, test, report


@dataclass(frozen=True)
class ProductionReport:
    """How feedback-labelled production tickets joined a retraining run."""

    rows_read: int
    rows_dropped_small_new_classes: int
    duplicates_dropped: int
    train_rows: int
    evaluation_rows: int
    new_classes: list[str]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def add_production_rows(
    train: pd.DataFrame, test: pd.DataFrame, production: pd.DataFrame, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame, ProductionReport]:
    """Base train/test plus feedback-labelled production tickets, split per class the same way.
    A class the base data never had needs enough rows to be learned and evaluated; rows of
    smaller new classes are dropped and counted."""
    rows = production[[SHORT, NOTES, LABEL]].fillna({NOTES: ""}).astype(str)
    rows = rows[rows[SHORT].str.strip().ne("") & rows[LABEL].str.strip().ne("")]
    deduplicated = rows.drop_duplicates()
    counts = deduplicated[LABEL].value_counts()
    known = set(train[LABEL])
    small_new = [
        label
        for label, n in counts.items()
        if label not in known and n < 2 * (minimum_rows_per_class(settings))
    ]
    kept = deduplicated[~deduplicated[LABEL].isin(small_new)]
    to_train, to_test = _split_per_class(kept, settings.test_size, settings.seed)
    report = ProductionReport(
        rows_read=len(production),
        rows_dropped_small_new_classes=int(deduplicated[LABEL].isin(small_new).sum()),
        duplicates_dropped=len(rows) - len(deduplicated),
        train_rows=len(to_train),
        evaluation_rows=len(to_test),
        new_classes=sorted(set(kept[LABEL]) - known),
    )
    merged_train = pd.concat([train, to_train], ignore_index=True)
    merged_test = pd.concat([test, to_test], ignore_index=True)
    return merged_train, merged_test, report


def _split_per_class(
    rows: pd.DataFrame, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each class's rows shuffled and cut at ``test_size``; a single row goes to training."""
    shuffled = rows.sample(frac=1.0, random_state=seed)
    rank = shuffled.groupby(LABEL).cumcount()
    size = shuffled.groupby(LABEL)[LABEL].transform("size")
    to_test = rank < (size * test_size).round().clip(upper=size - 1)
    return shuffled[~to_test].reset_index(drop=True), shuffled[to_test].reset_index(drop=True)
