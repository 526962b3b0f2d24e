"""The study cache reads only what it wrote: JSON, signed, never a serializer named by the file."""

from __future__ import annotations

import base64
import json
import os
import pickle
import time
from pathlib import Path

from core.training.study_cache import StudyCache
from core.training.tuning import StudyResult, TrialPredictions


class _RunsCode:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.makedirs, (str(self.marker),))


def _result(score: float = 0.8) -> StudyResult:
    return StudyResult(
        family="linear_svm",
        best_params={"C": 0.5, "char_ngrams": "char_2_5", "class_weight": None},
        cv_macro_f1=score,
        trials=4,
        pruned=1,
        seconds=2.5,
        trial_predictions=[TrialPredictions({"C": 1.0}, 0.7, float("nan"), [[0, 1], [1, 0]])],
    )


def test_a_saved_study_reads_back_equal(tmp_path: Path) -> None:
    cache = StudyCache(tmp_path, "secret")
    assert cache.load("k") is None
    cache.save("k", _result())
    loaded = cache.load("k")
    assert loaded is not None and loaded.best_params == _result().best_params
    assert loaded.trial_predictions[0].predictions == [[0, 1], [1, 0]]
    assert (loaded.family, loaded.cv_macro_f1, loaded.trials) == ("linear_svm", 0.8, 4)
    assert StudyCache(tmp_path, "another secret").load("k") is None, "signed with the key"
    assert cache.load("other key") is None


def test_a_file_rewritten_to_name_pickle_runs_nothing_and_reads_as_absent(tmp_path: Path) -> None:
    cache = StudyCache(tmp_path, "secret")
    path = cache.save("k", _result())
    marker = tmp_path / "code-ran"
    payload = base64.b64encode(pickle.dumps(_RunsCode(marker))).decode()
    # What an attacker who can write the folder does to a Prefect result file.
    path.write_text(
        json.dumps(
            {
                "metadata": {"serializer": {"type": "pickle"}, "storage_key": str(path)},
                "result": payload,
            }
        )
    )
    assert cache.load("k") is None
    assert not marker.exists()


def test_an_edited_score_is_ignored(tmp_path: Path) -> None:
    cache = StudyCache(tmp_path, "secret")
    path = cache.save("k", _result(0.5))
    record = json.loads(path.read_text())
    record["result"] = record["result"].replace('"cv_macro_f1": 0.5', '"cv_macro_f1": 0.99')
    assert '"cv_macro_f1": 0.99' in record["result"]
    path.write_text(json.dumps(record))
    assert cache.load("k") is None
    path.write_text("{not json")
    assert cache.load("k") is None


def test_old_records_count_as_absent_and_are_pruned(tmp_path: Path) -> None:
    cache = StudyCache(tmp_path, "secret", max_age_s=60)
    path = cache.save("k", _result())
    assert cache.load("k") is not None
    old = time.time() - 120
    os.utime(path, (old, old))
    record = json.loads(path.read_text())
    assert cache.prune(now=time.time()) == 1 and not path.exists()
    assert StudyCache(tmp_path, "secret", max_age_s=60).prune() == 0
    assert record["saved_at"] > old
    expired = StudyCache(tmp_path, "secret", max_age_s=0.0)
    expired.save("k", _result())
    time.sleep(0.01)
    assert expired.load("k") is None
