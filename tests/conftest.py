"""Shared fixtures: small, seeded demo data and settings rooted in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.settings import Settings


@pytest.fixture(scope="session")
def demo_frame() -> pd.DataFrame:
    return generate_tickets(600, "baseline", seed=7)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        trials=2,
        timeout_s=30,
        families=("logistic_regression",),
        profile="fast",  # the loop's tests; the encoder has tests of its own
    )


@pytest.fixture
def demo_csv(tmp_path: Path, demo_frame: pd.DataFrame) -> Path:
    path = tmp_path / "tickets.csv"
    demo_frame.to_csv(path, index=False)
    return path
