"""The seven model families: a search space, default and starting parameters, and the head of
the pipeline for each; ``build_pipeline`` assembles ``normalize -> features -> head``, with the
text and feature part from core/training/features.py. The estimators it assembles live in
``core/models.py``, whose import paths saved bundles depend on; nothing in this module is saved
by name."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sklearn.ensemble import (
    ExtraTreesClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from core.models import (
    Cascade,
    WeightedEnsemble,
)

if TYPE_CHECKING:
    import optuna

from core.training import heads as h
from core.training.features import (
    DEFAULT_FEATURES,
    DEFAULT_TEXT,
    ENCODER_FIRST_WEIGHT,
    FEATURE_KEYS,
    TEXT_KEYS,
    Params,
    build_features,
    build_normalizer,
    has_dense_block,
)

# A search may ask for more selected features than a small table has; all are kept, as intended.
warnings.filterwarnings("ignore", message=r"k=\d+ is greater than n_features", category=UserWarning)
# liblinear stopping at its iteration limit is counted per study and reported in one line
# (core/training/tuning.py), instead of a warning with its source line for every fit.
warnings.filterwarnings("ignore", category=ConvergenceWarning)


ENCODER_PROFILES = ("standard", "accurate")
#: The family name of a weighted ensemble of other families' pipelines.
ENSEMBLE = "ensemble"


def searches_encoder(families: tuple[str, ...], profile: str) -> bool:
    """Whether a training with these families and this profile may try the encoder block: the
    standard profile (``accurate``, its old name, in settings recorded before the rename), with a
    linear family; the fast profile never does."""
    return profile in ENCODER_PROFILES and any(REGISTRY[family].encoder for family in families)


@dataclass(frozen=True)
class Family:
    """A model family: its own hyper-parameters and the estimator steps after the features.
    ``embeddings`` says whether its search may add the token-embedding block: tree families
    select features with chi-squared, which needs non-negative inputs, so only linear ones do."""

    name: str
    suggest: Callable[[optuna.Trial], Params]
    #: (head parameters, seed, threads, whether the features hold a dense block) -> steps.
    head: Callable[[Params, int, int, bool], list[tuple[str, Any]]]
    defaults: Params
    embeddings: bool = False
    #: A linear model: the simpler choice when scores are within noise (one-standard-error rule).
    linear: bool = False
    #: Whether its search may add the sentence-encoder block (the standard profile): the linear
    #: families, whose heads take dense signed features.
    encoder: bool = False


REGISTRY: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "logistic_regression",
            h.suggest_logreg,
            h.head_logreg,
            {"C": 20.0},
            True,
            True,
            encoder=True,
        ),
        Family("linear_svm", h.suggest_svm, h.head_svm, {"C": 0.5}, True, True, encoder=True),
        Family(
            "random_forest",
            h.suggest_forest,
            h.forest_head(RandomForestClassifier),
            h.forest_defaults(),
        ),
        Family(
            "extra_trees",
            h.suggest_forest,
            h.forest_head(ExtraTreesClassifier),
            h.forest_defaults(),
        ),
        Family(
            "gradient_boosting",
            h.suggest_hgb,
            h.head_hgb,
            {"k": 800, "learning_rate": 0.1, "max_leaf_nodes": 15, "l2_regularization": 1.0},
        ),
        Family(
            "xgboost",
            h.suggest_xgb,
            h.head_xgb,
            {
                "k": 1000,
                "n_estimators": 150,
                "max_depth": 6,
                "learning_rate": 0.15,
                "subsample": 0.9,
                "colsample_bytree": 0.5,
            },
        ),
        Family(
            "lightgbm",
            h.suggest_lgbm,
            h.head_lgbm,
            {
                "k": 1000,
                "n_estimators": 150,
                "num_leaves": 16,
                "learning_rate": 0.1,
                "min_child_samples": 10,
                "colsample_bytree": 0.5,
            },
        ),
    )
}


def default_params(family: str) -> Params:
    """A known-reasonable starting point, tried first by every study."""
    return {**DEFAULT_TEXT, **DEFAULT_FEATURES, **REGISTRY[family].defaults}


def starting_points(family: str, encoder: bool = False) -> list[Params]:
    """Trials every study runs first, so even a small budget compares the representations.
    The first is the family's default configuration. Where the family takes the sentence
    encoder (``encoder``: the standard profile) that default includes it at weight
    ``ENCODER_FIRST_WEIGHT``: a linear model over TF-IDF plus multilingual sentence vectors is
    the strong prior where data is scarce. Then the same without the encoder, with the
    token-embedding block, on word-bounded character n-grams and on fully normalised text."""
    base = default_params(family)
    with_embeddings: list[Params] = []
    if REGISTRY[family].embeddings:
        base = {**base, "embedding_weight": 0.0}
        with_embeddings.append({**base, "embedding_weight": 1.0})
    plain = base
    points = [base]
    if encoder and REGISTRY[family].encoder:
        plain = {**base, "encoder_weight": 0.0}
        base = {**base, "encoder_weight": ENCODER_FIRST_WEIGHT}
        points = [base, plain]
        with_embeddings = [{**e, "encoder_weight": 0.0} for e in with_embeddings]
    full_text = {key: value for key, value in plain.items() if key != "encoder_weight"}
    return [
        *points,
        *with_embeddings,
        {**base, "char_ngrams": "char_wb_2_5", "min_df": 2},
        {**full_text, "text_level": "full", "stem": True, "remove_stop_words": False},
    ]


def baseline_points(family: str, encoder: bool = False) -> list[Params]:
    """The configurations a linear family's search is judged against (bias-corrected
    selection, core/training/leaderboard.py): its defaults, with and without the encoder where
    the search offers it. Empty for the tree families."""
    if not REGISTRY[family].linear:
        return []
    points = starting_points(family, encoder)
    return points[:2] if encoder and REGISTRY[family].encoder else points[:1]


def split_params(params: Params) -> tuple[Params, Params, Params]:
    """(text, features, head) parts of a flat parameter dict."""
    text = {key: params[key] for key in TEXT_KEYS if key in params}
    features = {key: params[key] for key in FEATURE_KEYS if key in params}
    head = {key: value for key, value in params.items() if key not in (*TEXT_KEYS, *FEATURE_KEYS)}
    return text, features, head


def build_head(
    family: str,
    head_params: Params,
    seed: int,
    n_jobs: int = 1,
    calibrate: bool = True,
    dense: bool = False,
) -> Pipeline:
    """The steps after the features (``dense``: they hold a dense block). ``calibrate=False``
    skips probability calibration: cross-validation fits its temperature on the out-of-fold
    decisions of all folds instead (core/training/tuning.py)."""
    head = Pipeline(REGISTRY[family].head(head_params, seed, n_jobs, dense))
    if not calibrate:
        for name, step in head.steps:
            if hasattr(step, "calibration_folds"):
                head.set_params(**{f"{name}__calibration_folds": 0})
    return head


def build_model(
    family: str,
    params: Params,
    language: str,
    seed: int,
    n_jobs: int = 1,
    gate: dict[str, Any] | None = None,
) -> Any:
    """The unfitted model that is trained, saved and served: a family's pipeline, or for
    ``ENSEMBLE`` a ``WeightedEnsemble`` of its members' pipelines (``params["members"]``: each
    a family, its parameters and its weight); with a ``gate`` (its family, parameters and
    threshold), that model behind the gate's pipeline (``Cascade``)."""
    if gate is not None:
        return Cascade(
            build_pipeline(gate["family"], gate["params"], language, seed, n_jobs),
            build_model(family, params, language, seed, n_jobs),
            float(gate["threshold"]),
        )
    if family != ENSEMBLE:
        return build_pipeline(family, params, language, seed, n_jobs)
    members = list(params["members"])
    return WeightedEnsemble(
        [
            (f"{i}-{m['family']}", build_pipeline(m["family"], m["params"], language, seed, n_jobs))
            for i, m in enumerate(members)
        ],
        [float(m["weight"]) for m in members],
    )


def build_pipeline(
    family: str, params: Params, language: str, seed: int, n_jobs: int = 1
) -> Pipeline:
    """The full, unfitted pipeline of one family that is trained, saved and served."""
    text, features, head = split_params(params)
    steps: list[tuple[str, Any]] = [
        ("normalize", build_normalizer(text, language)),
        ("features", build_features(features)),
        *REGISTRY[family].head(head, seed, n_jobs, has_dense_block(features)),
    ]
    return Pipeline(steps)
