"""The tuning table published for other processes comes back as the same problem: the same
fingerprint and folds, loaded once per process."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd

from core.settings import Settings
from core.training import shared_data
from core.training.tuning import TuningData


def test_the_tuning_table_survives_a_round_trip_through_the_store(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    data = shared_data.publish(TuningData(demo_frame, "spanish", 3, 7), settings)
    shared_data._loaded.clear()
    loaded = shared_data.load(data.shared)
    assert loaded.fingerprint() == data.fingerprint()
    assert [list(v) for _, v in loaded.folds] == [list(v) for _, v in data.folds]
    assert shared_data.load(data.shared) is loaded


def test_a_published_table_pickles_as_its_location_and_an_unpublished_one_without_locks(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    data = TuningData(demo_frame, "spanish", 3, 7)
    data.documents({"text_level": "light"})  # a warm cache does not travel
    copy = pickle.loads(pickle.dumps(data))
    assert copy.fingerprint() == data.fingerprint() and not copy._documents
    shared_data.publish(data, Settings(home=tmp_path / "home"))
    assert len(pickle.dumps(data)) * 5 < len(pickle.dumps(copy))
    assert pickle.loads(pickle.dumps(data)) is data  # this process already holds it
