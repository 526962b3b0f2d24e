from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.data.reading import read_table
from core.data.tables import DataError, load_training_data, prepare_training_table
from core.settings import Settings


def _write(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_split_is_stratified_and_disjoint(settings: Settings, demo_csv: Path) -> None:
    train, test, report = load_training_data(settings, str(demo_csv))
    assert report.rows_read == 600
    assert len(train) + len(test) == report.rows_kept
    assert set(train["label"]) == set(test["label"])
    assert abs(len(test) / report.rows_kept - settings.test_size) < 0.02
    assert list(train.columns) == ["short_description", "close_notes", "label"]


def test_duplicates_are_dropped_and_counted(settings: Settings, demo_frame: pd.DataFrame) -> None:
    doubled = pd.concat([demo_frame, demo_frame.head(25)])
    frame, report = prepare_training_table(doubled, "t.csv", settings)
    assert report.rows_read == len(doubled)
    assert report.duplicates_dropped == len(doubled) - len(demo_frame.drop_duplicates())
    assert len(frame) == report.rows_kept


def test_configurable_columns_and_parquet(tmp_path: Path, demo_frame: pd.DataFrame) -> None:
    renamed = demo_frame.rename(
        columns={"short_description": "titulo", "close_notes": "notas", "label": "etiqueta"}
    )
    path = tmp_path / "t.parquet"
    renamed.to_parquet(path)
    settings = Settings(home=tmp_path, text_columns=("titulo", "notas"), label_column="etiqueta")
    train, _, _ = load_training_data(settings, str(path))
    assert set(train["label"]) == set(demo_frame["label"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"short_description,close_notes,label\n", "no rows"),
        (b"titulo,label\nhola,a\n", "missing column(s) ['short_description', 'close_notes']"),
        (b"short_description,close_notes,label\nok,,a\n ,  ,b\n", "empty text in row(s) 2"),
        (b"short_description,close_notes,label\nok,,a\nbien,,\n", "empty 'label' in row(s) 2"),
    ],
)
def test_bad_files_get_one_clear_error(
    tmp_path: Path, settings: Settings, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        load_training_data(settings, str(path))
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_one_class_and_tiny_classes_are_refused(tmp_path: Path, settings: Settings) -> None:
    one = _write(
        tmp_path / "one.csv",
        pd.DataFrame({"short_description": list("abcdefgh"), "close_notes": "", "label": "x"}),
    )
    with pytest.raises(DataError, match="only one class"):
        load_training_data(settings, one)
    rows = {
        "short_description": [f"t{i}" for i in range(12)],
        "close_notes": "",
        "label": ["x"] * 9 + ["y"] * 3,
    }
    tiny = _write(tmp_path / "tiny.csv", pd.DataFrame(rows))
    with pytest.raises(DataError, match=r"class\(es\) 'y' \(3\) have fewer than 5 rows"):
        load_training_data(settings, tiny)


def test_unseen_test_labels_are_refused(tmp_path: Path, settings: Settings, demo_csv: Path) -> None:
    test = _write(
        tmp_path / "test.csv",
        pd.DataFrame({"short_description": ["a"], "close_notes": [""], "label": ["nueva"]}),
    )
    with pytest.raises(
        DataError, match=r"label\(s\) \['nueva'\] never appear in the training data"
    ):
        load_training_data(settings, str(demo_csv), test)


def test_missing_file_is_a_data_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_table(str(tmp_path / "absent.csv"), settings)


def test_bom_is_accepted(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffshort_description,close_notes,label\nsesión,,a\n".encode())
    assert read_table(str(path), settings)[0].columns[0] == "short_description"


def test_production_rows_join_train_and_evaluation_and_small_new_classes_are_counted() -> None:
    from core.data.tables import add_production_rows
    from core.settings import Settings

    base_train = pd.DataFrame(
        {"short_description": ["a", "b"], "close_notes": ["", ""], "label": ["x", "y"]}
    )
    base_test = base_train.copy()
    production = pd.DataFrame(
        {
            "short_description": [f"nuevo {i}" for i in range(20)] + ["raro", "x1", "x1", " "],
            "close_notes": [None] * 24,
            "label": ["fraude"] * 20 + ["solo", "x", "x", "x"],
        }
    )
    train, test, report = add_production_rows(
        base_train, base_test, production, Settings(test_size=0.2)
    )
    assert report.new_classes == ["fraude"] and report.rows_dropped_small_new_classes == 1
    assert report.duplicates_dropped == 1 and report.rows_read == 24
    assert (test["label"] == "fraude").sum() == 4 and (train["label"] == "fraude").sum() == 16
    assert "solo" not in set(train["label"]) | set(test["label"])
    assert (train["label"] == "x").sum() == 2 and len(test) == 2 + report.evaluation_rows


SPANISH_EXPORT = "Tipolog\u00eda;Observaciones;Categor\u00eda\n" + "".join(
    f"No puedo iniciar sesi\u00f3n {i};Contrase\u00f1a bloqueada;acceso\n"
    f"Certificado de retenci\u00f3n {i};Se env\u00eda por correo;certificados\n"
    for i in range(8)
)
SPANISH = Settings(text_columns=("Tipología", "Observaciones"), label_column="Categoría")


def _spanish(tmp_path: Path, **overrides: object) -> Settings:
    return SPANISH.model_copy(update={"home": tmp_path / "home", **overrides})


@pytest.mark.parametrize(
    ("delimiter", "encoding", "bom", "detected"),
    [
        (";", "cp1252", b"", "windows-1252"),
        (",", "utf-8", b"", "utf-8"),
        ("\t", "utf-8", b"\xef\xbb\xbf", "utf-8"),
        ("|", "latin-1", b"", "windows-1252"),
    ],
)
def test_spreadsheet_exports_are_read_as_people_save_them(
    tmp_path: Path, delimiter: str, encoding: str, bom: bytes, detected: str
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(bom + SPANISH_EXPORT.replace(";", delimiter).encode(encoding))
    train, _, report = load_training_data(_spanish(tmp_path), str(path))
    assert (report.format, report.encoding, report.delimiter) == ("csv", detected, delimiter)
    assert report.rows_kept == 16 and report.classes == 2
    assert any("sesión" in text for text in train["short_description"])
    assert any("Contraseña" in text for text in train["close_notes"])


def test_a_forced_encoding_that_does_not_fit_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(SPANISH_EXPORT.encode("cp1252"))
    with pytest.raises(DataError, match="not utf-8 text \\(invalid byte at line 1\\)"):
        load_training_data(_spanish(tmp_path, data_encoding="utf-8"), str(path))
    with pytest.raises(DataError, match="unknown encoding 'klingon'"):
        load_training_data(_spanish(tmp_path, data_encoding="klingon"), str(path))


def test_xlsx_and_json_lines(tmp_path: Path) -> None:
    import io

    frame = pd.read_csv(io.StringIO(SPANISH_EXPORT), sep=";", dtype=str)
    workbook = tmp_path / "export.xlsx"
    frame.to_excel(workbook, index=False)
    lines = tmp_path / "export.jsonl"
    frame.to_json(lines, orient="records", lines=True, force_ascii=False)
    for path, kind in ((workbook, "xlsx"), (lines, "jsonl")):
        _, _, report = load_training_data(_spanish(tmp_path), str(path))
        assert report.format == kind and report.rows_kept == 16


def test_accented_column_names_match_however_they_were_typed(tmp_path: Path) -> None:
    decomposed = "Tipologi\u0301a"  # the accent as a combining mark, as some keyboards type it
    path = tmp_path / "export.csv"
    path.write_bytes(SPANISH_EXPORT.replace("Categoría", " categoría ").encode("utf-8"))
    settings = _spanish(tmp_path, text_columns=(decomposed, "Observaciones"))
    _, _, report = load_training_data(settings, str(path))
    assert report.rows_kept == 16
    with pytest.raises(DataError, match="missing column"):
        load_training_data(_spanish(tmp_path, label_column="Etiqueta"), str(path))
