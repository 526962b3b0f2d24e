"""Explanations: the parts add up to the score the model computes, they sit on words of the
ticket, and the n-gram bookkeeping agrees with scikit-learn's analyzers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from core.data.simulate import generate_tickets
from core.explain import explain, global_terms, word_sum
from core.explain.words import char_wb_grams
from core.training.families import build_pipeline, default_params

TEXT = ["short_description", "close_notes"]
TICKET = (
    "No puedo iniciar sesión en el portal; contraseña caducada!!",
    "Se restableció la contraseña del usuario (ver https://intranet.example/ayuda) #4521",
)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return generate_tickets(700, "baseline", seed=3)


def _fit(family: str, data: pd.DataFrame, **overrides: Any) -> Any:
    params = {**default_params(family), **overrides}
    model = build_pipeline(family, params, "spanish", 0)
    return model.fit(data[TEXT], data["label"].to_numpy(dtype=object))


def _decision(model: Any, short: str, notes: str) -> np.ndarray:
    row = np.asarray([[short, notes]], dtype=object)
    features = model[:-1].transform(row)
    return np.asarray(model.steps[-1][1].decision_function(features)).reshape(1, -1)[0]


def _on_the_ticket(result: Any, short: str, notes: str) -> None:
    fields = {"short_description": short, "close_notes": notes}
    for explained in result.classes:
        assert explained.top_terms, "some words carry weight"
        for word in explained.words + explained.top_terms:
            assert fields[word.field][word.start : word.end] == word.word


@pytest.mark.parametrize(
    ("family", "overrides"),
    [
        ("logistic_regression", {}),
        ("linear_svm", {}),
        ("logistic_regression", {"text_level": "full", "stem": True, "remove_stop_words": True}),
        ("linear_svm", {"char_ngrams": "char_wb_2_5", "embedding_weight": 1.0}),
    ],
)
def test_linear_contributions_and_intercept_give_the_decision_score(
    data: pd.DataFrame, family: str, overrides: dict[str, Any]
) -> None:
    model = _fit(family, data, **overrides)
    result = explain(model, *TICKET, top_k=5)
    assert result.method == "linear"
    decision = _decision(model, *TICKET)
    classes = list(model.classes_)
    probabilities = model.predict_proba(np.asarray([TICKET], dtype=object))[0]
    assert result.prediction == classes[int(np.argmax(probabilities))]
    assert [c.label for c in result.classes] == [classes[i] for i in np.argsort(-probabilities)[:2]]
    for explained in result.classes:
        expected = decision[classes.index(explained.label)]
        assert explained.score == pytest.approx(expected, abs=1e-9)
        assert word_sum(explained) == pytest.approx(expected, abs=1e-6)
        assert len(explained.top_terms) <= 5 and 0 < explained.explained_share <= 1
    _on_the_ticket(result, *TICKET)
    if "embedding_weight" in overrides:
        assert "embedding" in result.classes[0].other


def test_word_features_land_on_their_words_and_nothing_is_left_unplaced(
    data: pd.DataFrame,
) -> None:
    model = _fit("logistic_regression", data, char_ngrams="none", word_ngram_max=2)
    result = explain(model, "No puedo entrar al portal, ¿contraseña?", "")
    (first, *_) = result.classes
    assert abs(first.other.get("unplaced", 0.0)) < 1e-9
    words = {w.word for w in first.words if w.weight != 0}
    assert {"portal", "contraseña"} <= words


def test_a_binary_model_explains_both_classes(data: pd.DataFrame) -> None:
    two = data[data["label"].isin(data["label"].unique()[:2])]
    model = _fit("logistic_regression", two)
    result = explain(model, *TICKET)
    decision = _decision(model, *TICKET)  # one column: the positive class's score
    scores = {c.label: c.score for c in result.classes}
    classes = list(model.classes_)
    assert scores[classes[1]] == pytest.approx(decision[0], abs=1e-9)
    assert scores[classes[0]] == pytest.approx(-decision[0], abs=1e-9)


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_boosters_use_their_shap_values_which_add_up_to_the_margin(
    data: pd.DataFrame, family: str
) -> None:
    model = _fit(family, data, n_estimators=40)
    result = explain(model, *TICKET)
    assert result.method == "tree-shap"
    row = np.asarray([TICKET], dtype=object)
    features = model[:-1].transform(row)
    head = model.steps[-1][1]
    booster = head.estimator_ if family == "xgboost" else head
    margin = np.asarray(
        booster.predict(features, output_margin=True)
        if family == "xgboost"
        else booster.predict(features, raw_score=True)
    ).ravel()
    classes = list(model.classes_)
    for explained in result.classes:
        expected = margin[classes.index(explained.label)]
        assert explained.score == pytest.approx(expected, abs=1e-4)
        assert word_sum(explained) == pytest.approx(expected, abs=1e-4)
    _on_the_ticket(result, *TICKET)


def test_other_trees_weigh_a_word_by_the_probability_it_adds(data: pd.DataFrame) -> None:
    model = _fit("random_forest", data, n_estimators=50, k=1000)
    result = explain(model, *TICKET)
    assert result.method == "occlusion" and result.classes[0].intercept is None
    top = result.classes[0].top_terms[0]
    fields = dict(zip(TEXT, TICKET, strict=True))
    text = fields[top.field]
    fields[top.field] = text[: top.start] + " " + text[top.end :]
    without = model.predict_proba(np.asarray([[fields[c] for c in TEXT]], dtype=object))[0]
    label = list(model.classes_).index(result.classes[0].label)
    assert top.weight == pytest.approx(result.classes[0].probability - without[label], abs=1e-9)


def test_char_wb_grams_match_scikit_learn() -> None:
    for word in ["a", "ab", "sesion", "contrasena"]:
        analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
        assert char_wb_grams(f" {word} ", 2, 5) == analyzer(word)


def test_the_global_view_names_each_class(data: pd.DataFrame) -> None:
    linear = global_terms(_fit("logistic_regression", data), [], k=5)
    assert set(linear) == set(data["label"]) and all(len(t) == 5 for t in linear.values())
    weights = [w for terms in linear.values() for _, w in terms]
    assert all(w > 0 for w in weights), "a class's strongest terms push towards it"
    rows = [(str(s), str(n)) for s, n in data[TEXT].head(10).fillna("").to_numpy(dtype=object)]
    forest = global_terms(_fit("random_forest", data, n_estimators=30, k=800), rows, k=5)
    assert forest and all(len(terms) <= 5 for terms in forest.values())


@pytest.mark.parametrize(
    "overrides",
    [{}, {"char_ngrams": "char_wb_2_5"}, {"char_ngrams": "char_1_4"}, {"text_level": "full"}],
)
def test_the_vectorised_placement_agrees_with_the_plain_one(
    data: pd.DataFrame, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Words get the same weights whether the n-grams are found by the vectorised counter's
    windows or by enumerating them in Python (the path for vectorisers it cannot count)."""
    import core.explain.words

    model = _fit("logistic_regression", data, **overrides)
    tickets = [TICKET, ("Contraseña  caducada!! ¿¿VPN?? 12345", "a\tb  . c"), ("x", "")]
    fast = [explain(model, *ticket) for ticket in tickets]
    monkeypatch.setattr(core.explain.words, "located", lambda *args: None)
    plain = [explain(model, *ticket) for ticket in tickets]
    for one, other in zip(fast, plain, strict=True):
        for a, b in zip(one.classes, other.classes, strict=True):
            assert [w.weight for w in a.words] == pytest.approx([w.weight for w in b.words])
            assert a.other.get("unplaced", 0) == pytest.approx(b.other.get("unplaced", 0))


class _Counting:
    """A model whose predict_proba calls are recorded (how many rows each)."""

    def __init__(self, model: Any) -> None:
        self.model: Any = model
        self.calls: list[int] = []
        self.classes_ = model.classes_
        self.steps = model.steps

    def predict_proba(self, rows: Any) -> np.ndarray:
        self.calls.append(len(rows))
        return np.asarray(self.model.predict_proba(rows))


def test_occlusion_of_a_huge_ticket_scores_a_bounded_number_of_variants_in_chunks(
    data: pd.DataFrame,
) -> None:
    """2,000 one-letter words a field: a variant per word cost 58 s and 8 GB; spans of
    neighbouring words are removed together instead, a bounded number of them, in chunks."""
    from core.explain.attribution import MAX_OCCLUDED_SPANS, OCCLUSION_CHUNK, _occlusion
    from core.explain.words import ticket_words

    model = _Counting(_fit("random_forest", data, n_estimators=20, k=500))
    short, notes = " ".join(["a"] * 2000), " ".join(["b"] * 2000)
    words = ticket_words(short, notes)
    assert len(words) == 4000
    probabilities = np.asarray(
        model.model.predict_proba(np.asarray([[short, notes]], dtype=object))
    )[0]
    order = np.argsort(-probabilities)[:2]
    parts = _occlusion(model, short, notes, words, order, probabilities)
    assert sum(model.calls) <= MAX_OCCLUDED_SPANS and max(model.calls) <= OCCLUSION_CHUNK
    assert all(len(p.word_weights) == len(words) for p in parts)
    # every word of a span shares its drop: the weights of one field's words add up to its spans'
    result = explain(model.model, short, notes)
    assert result.method == "occlusion" and len(result.classes[0].words) == 4000


def test_occlusion_spans_keep_the_fields_apart_and_every_word_once() -> None:
    from core.explain.attribution import occlusion_spans
    from core.explain.words import ticket_words

    words = ticket_words("uno dos tres", " ".join(f"w{i}" for i in range(200)))
    spans = occlusion_spans(words, cap=10)
    assert len(spans) <= 10
    assert sorted(i for span in spans for i in span) == list(range(len(words)))
    assert all(len({words[i].field for i in span}) == 1 for span in spans)
    assert occlusion_spans(words[:5], cap=10) == [[0], [1], [2], [3], [4]]  # short: word by word
