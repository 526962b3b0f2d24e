"""Spreadsheet cells that cannot run: CSV files the system writes for people are opened in
spreadsheets, which run a cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return before one) as a formula: ``=HYPERLINK(...)`` in an anonymous ticket's text would run on
an agent's machine (CSV injection, OWASP). Such a cell is written with a leading apostrophe, which
spreadsheets show as text and do not display; the same cell read back loses it again."""

from __future__ import annotations

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: str) -> str:
    """``value`` as a spreadsheet shows it without running it."""
    return f"'{value}" if value.startswith(TRIGGERS) else value


def restored(value: str) -> str:
    """A cell ``neutralised`` wrote, as it was."""
    return value[1:] if value.startswith("'") and value[1:].startswith(TRIGGERS) else value


def neutralised_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every text cell of ``frame`` neutralised (numbers stay numbers)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = [neutralised(v) if isinstance(v, str) else v for v in out[column]]
    return out
