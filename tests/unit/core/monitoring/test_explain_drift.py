"""A fired drift test says what changed, beside the reference, with tickets that show it."""

from __future__ import annotations

import pandas as pd

from core.data.simulate import generate_tickets
from core.monitoring.drift import DriftReport, drift_report
from core.monitoring.explain_drift import explain_classes, explain_lengths, explain_vocabulary
from tests.unit.core.monitoring.conftest import SETTINGS, Reference, window_of


def _report(reference: Reference, scenario: str) -> tuple[pd.DataFrame, DriftReport]:
    window = window_of(reference.model, generate_tickets(500, scenario, seed=5))
    return window, drift_report(window, reference.profile, reference.test_f1, SETTINGS)


def test_new_product_words_lead_the_gained_terms_and_their_tickets_carry_them(
    reference: Reference,
) -> None:
    window, report = _report(reference, "new_product")
    tests = {test.name: test for test in report.tests}
    assert tests["oov_rate"].fired and tests["vocabulary_js"].fired
    new = tests["oov_rate"].explanation
    assert new is not None and not new.lost
    gained = [shift.name for shift in new.gained]
    product_words = {"billetera", "cripto", "criptoactivos", "stablecoin", "tokenizacion", "esg"}
    assert product_words & set(gained[:5]), gained
    assert all(shift.reference_share is None for shift in new.gained)
    assert any(" " in name for name in gained), "bigrams are named as well as words"
    assert 1 <= len(new.examples) <= 5
    rows = window.set_index("request_id").loc[new.examples]
    texts = (rows["short_description"] + " " + rows["close_notes"]).str.lower()
    assert texts.str.contains("|".join(product_words)).all(), texts.tolist()
    # The same goes into the reasons (notifications, dashboard) and the markdown artifact.
    reason = next(r for r in report.reasons if r.startswith("oov_rate"))
    assert "What changed: new terms gained:" in reason and new.examples[0] in reason
    assert "## What changed" in report.markdown()
    stored = report.as_dict()["tests"]
    assert any(t["explanation"] and t["explanation"]["examples"] for t in stored)


def test_classes_and_lengths_name_what_moved(reference: Reference) -> None:
    window, report = _report(reference, "prior_shift")
    classes = next(t for t in report.tests if t.name == "predicted_class_psi").explanation
    assert classes is not None and classes.gained and classes.lost
    shares = window["prediction"].value_counts(normalize=True)
    top = classes.gained[0]
    assert abs(top.share - shares[top.name]) < 1e-9
    assert top.share > (top.reference_share or 0)
    assert set(window.set_index("request_id").loc[classes.examples, "prediction"]) == {top.name}

    long_window = window_of(reference.model, generate_tickets(500, "long_texts", seed=5))
    lengths = explain_lengths(long_window, reference.profile)
    assert lengths.gained and lengths.gained[0].name.endswith("+ characters")
    assert lengths.lost and lengths.lost[0].reference_share


def test_unchanged_traffic_explains_nothing_dramatic(reference: Reference) -> None:
    window = window_of(reference.model, generate_tickets(500, "baseline", seed=5))
    terms = explain_vocabulary(window, reference.profile, "spanish")
    assert all(abs(shift.change) < 0.02 for shift in terms.gained + terms.lost)
    classes = explain_classes(window, reference.profile)
    assert all(abs(shift.change) < 0.1 for shift in classes.gained + classes.lost)
    empty = explain_classes(pd.DataFrame({"prediction": [], "request_id": []}), reference.profile)
    assert not empty.gained and empty.examples == []
