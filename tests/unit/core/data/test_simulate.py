from __future__ import annotations

import pytest

from core.data.simulate import CATEGORIES, NEW_CATEGORY, SCENARIOS, generate_tickets
from core.errors import InputError


def test_same_seed_same_tickets_other_seed_other_tickets() -> None:
    first = generate_tickets(200, seed=1)
    assert first.equals(generate_tickets(200, seed=1))
    assert not first.equals(generate_tickets(200, seed=2))


def test_baseline_has_the_categories_columns_and_noise() -> None:
    frame = generate_tickets(3000, seed=3)
    assert list(frame.columns) == ["short_description", "close_notes", "label"]
    assert set(frame["label"]) == {c.label for c in CATEGORIES}
    assert len(CATEGORIES) >= 8
    notes = " ".join(frame["close_notes"])
    assert "@" in notes and "https://" in notes and "<p>" in notes and "INC" in notes
    assert (frame["close_notes"] == "").any()
    assert frame["short_description"].str.contains("ó|í|á|é").any()


def test_drift_scenarios_differ_from_baseline() -> None:
    base = generate_tickets(2000, seed=5)
    base_length = base["close_notes"].str.len().mean()
    assert (
        generate_tickets(2000, "long_texts", seed=5)["close_notes"].str.len().mean()
        > 2 * base_length
    )
    assert (
        generate_tickets(2000, "short_texts", seed=5)["close_notes"].str.len().mean()
        < base_length / 2
    )
    assert NEW_CATEGORY.label in set(generate_tickets(2000, "new_category", seed=5)["label"])
    shifted = generate_tickets(2000, "prior_shift", seed=5)["label"].value_counts(normalize=True)
    assert shifted.iloc[0] > 2 * base["label"].value_counts(normalize=True).iloc[0]
    new_product = generate_tickets(500, "new_product", seed=5)
    assert (
        new_product["short_description"].str.contains("cripto|stablecoin|ESG|tokenizacion").mean()
        > 0.3
    )


def test_every_scenario_runs_and_bad_names_are_refused() -> None:
    for scenario in SCENARIOS:
        assert len(generate_tickets(50, scenario)) == 50
    with pytest.raises(InputError, match="unknown scenario"):
        generate_tickets(10, "nope")
