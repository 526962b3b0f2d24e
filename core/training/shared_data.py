"""The training table for studies that run in other processes (Dask workers, perhaps on other
machines): published once to the artifact store under its fingerprint, and loaded at most once by
each process, which then keeps its own caches of normalised documents and per-fold TF-IDF matrices
for every task it runs. A task's arguments carry only where the table is (``SharedRows``), never
the table itself (prefect#17546: a local path another machine cannot see; pickling a table into
every task sends it once per task)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import pandas as pd

from core.data.tables import LABEL, NOTES, SHORT
from core.io.store import open_store
from core.settings import Settings
from core.training.tuning import TuningData

#: Tables a process keeps loaded (a worker serves one run at a time; two cover a rerun).
KEPT = 2


@dataclass(frozen=True)
class SharedRows:
    """Where a tuning table is and how its ``TuningData`` is rebuilt (the same folds: they
    follow from the rows and the seed)."""

    key: str
    fingerprint: str
    language: str
    cv_folds: int
    seed: int
    small_table_rows: int
    encoder: bool
    settings: Settings

    def load(self) -> TuningData:
        """What a pickled ``TuningData`` becomes in another process (``load`` below)."""
        return load(self)


_loaded: OrderedDict[str, TuningData] = OrderedDict()
_lock = threading.Lock()
#: Tables this process has read from the store (what the scale-out test counts per worker).
LOADS: list[str] = []


def publish(data: TuningData, settings: Settings) -> TuningData:
    """Write the table to the store once (its key is its fingerprint) and mark ``data`` so
    that pickling it sends only ``SharedRows``."""
    fingerprint = data.fingerprint()
    key = f"tuning/{fingerprint}.parquet"
    store = open_store(settings)
    if not store.exists(key):
        buffer = io.BytesIO()
        data.frame[[SHORT, NOTES, LABEL]].to_parquet(buffer, index=False)
        store.put(key, buffer.getvalue())
    data.shared = SharedRows(
        key,
        fingerprint,
        data.language,
        data.cv_folds,
        data.seed,
        data.small_table_rows,
        data.encoder,
        settings,
    )
    with _lock:  # this process already has it
        _loaded[fingerprint] = data
    return data


def load(shared: SharedRows) -> TuningData:
    """This process's ``TuningData`` for ``shared``: read from the store the first time, the
    same object (with its warm caches) every time after."""
    with _lock:
        data = _loaded.get(shared.fingerprint)
        if data is None:
            raw = open_store(shared.settings).get(shared.key)
            frame = pd.read_parquet(io.BytesIO(raw))
            data = TuningData(
                frame,
                shared.language,
                shared.cv_folds,
                shared.seed,
                small_table_rows=shared.small_table_rows,
                encoder=shared.encoder,
            )
            data.shared = shared
            LOADS.append(shared.fingerprint)
            _loaded[shared.fingerprint] = data
            while len(_loaded) > KEPT:
                _loaded.popitem(last=False)
        _loaded.move_to_end(shared.fingerprint)
        return data
