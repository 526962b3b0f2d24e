from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.setting_groups import ScaleSettings
from core.settings import FAMILIES, Settings


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.artifact_store_url() == (tmp_path / "store").resolve().as_uri()
    assert settings.tracking_uri() == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert settings.families == FAMILIES
    assert settings.promotion_margin == 0.01


def test_comma_separated_lists_and_unknown_families() -> None:
    settings = Settings(text_columns="titulo, notas", families="linear_svm,xgboost")
    assert settings.text_columns == ("titulo", "notas")
    assert settings.families == ("linear_svm", "xgboost")
    with pytest.raises(ValidationError, match="unknown families"):
        Settings(families="linear_svm,deep_net")


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_LABEL_COLUMN", "etiqueta")
    monkeypatch.setenv("TICKETS_TRIALS", "7")
    settings = Settings()
    assert (settings.label_column, settings.trials) == ("etiqueta", 7)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.trials = 3  # type: ignore[misc]


def test_lists_come_from_comma_separated_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import base64

    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    monkeypatch.setenv("TICKETS_FAMILIES", "linear_svm, lightgbm")
    monkeypatch.setenv("TICKETS_TEXT_COLUMNS", "asunto,notas")
    monkeypatch.setenv("TICKETS_WEBHOOK_SECRETS", f"{secret},{secret}")
    settings = Settings()
    assert settings.families == ("linear_svm", "lightgbm")
    assert settings.text_columns == ("asunto", "notas")
    assert [s.get_secret_value() for s in settings.webhook_secrets] == [secret, secret]
    monkeypatch.setenv("TICKETS_WEBHOOK_SECRETS", "not-a-secret")
    with pytest.raises(ValueError, match="whsec_"):
        Settings()


def test_empty_values_mean_unset_as_compose_passes_them() -> None:
    settings = Settings(admin_api_key="", label_api_keys="", prediction_log_url="", store_url=" ")
    assert settings.admin_api_key is None and settings.label_api_keys == ()
    assert settings.prediction_log_url is None and settings.store_url is None


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("admin_api_key", "short-key", "at least 16 characters"),
        ("admin_api_key", "changeme", "placeholder"),
        ("label_api_keys", "a-good-label-key-000,CHANGE-ME-PLEASE-NOW", "placeholder"),
        ("label_api_keys", "a-good-label-key-000,tiny", "at least 16 characters"),
        # The value in the Kubernetes template: a record forged with it was used.
        ("study_cache_key", "CHANGE-ME-0000000000", "placeholder"),
        ("study_cache_key", "short-key", "at least 16 characters"),
        ("canary_key", "changeme-changeme-changeme", "placeholder"),
    ],
)
def test_weak_keys_stop_the_service_without_echoing_them(
    field: str, value: str, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle) as error:
        Settings.model_validate({field: value})
    assert value not in str(error.value)


def test_label_keys_are_comma_separated() -> None:
    settings = Settings(label_api_keys="first-label-key-0000, second-label-key-000")
    assert [key.get_secret_value() for key in settings.label_api_keys] == [
        "first-label-key-0000",
        "second-label-key-000",
    ]


def test_grouped_settings_keep_their_flat_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from core.setting_groups import flat_name

    monkeypatch.setenv("TICKETS_SMTP_PORT", "25")
    monkeypatch.setenv("TICKETS_RETRAIN_COOLDOWN", "2h")
    monkeypatch.setenv("TICKETS_NOTIFY_EMAIL_TO", "ops@example.org, ml@example.org")
    monkeypatch.setenv("TICKETS_TOP_K", "5")
    from_environment = Settings()
    assert from_environment.smtp.port == 25 and from_environment.serving.top_k == 5
    assert from_environment.retraining.cooldown == timedelta(hours=2)
    assert from_environment.notify.email_to == ("ops@example.org", "ml@example.org")
    flat: dict[str, Any] = {"smtp_port": 587, "max_batch": 7}
    given = Settings(**flat)  # keyword arguments, by flat name, win over the environment
    assert (given.smtp.port, given.serving.max_batch, given.serving.top_k) == (587, 7, 5)
    again = Settings.model_validate_json(from_environment.model_dump_json())
    assert again.retraining.cooldown == timedelta(hours=2), "a dumped Settings reads back"
    assert "TICKETS_SMTP_PORT" in Settings.env_names() and "TICKETS_HOME" in Settings.env_names()
    with pytest.raises(ValidationError) as refused:
        Settings(**{**flat, "smtp_port": 0})
    assert flat_name(refused.value.errors()[0]["loc"]) == "smtp_port"


def test_a_sqlite_optuna_storage_and_loops_without_a_storage_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="journal"):
        ScaleSettings(optuna_storage="sqlite:///optuna.db")
    with pytest.raises(ValueError, match="TICKETS_OPTUNA_STORAGE"):
        ScaleSettings(workers_per_study=2)
    from_environment = {"TICKETS_TASK_RUNNER": "dask", "TICKETS_OPTUNA_STORAGE": "journal:/j.log"}
    for name, value in {**from_environment, "TICKETS_WORKERS_PER_STUDY": "2"}.items():
        monkeypatch.setenv(name, value)
    scale = Settings().scale
    assert (scale.task_runner, scale.storage_url(), scale.workers_per_study) == (
        "dask",
        "journal:/j.log",
        2,
    )
