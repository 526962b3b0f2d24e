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

from lightgbm import LGBMClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from core.models import (
    Cascade,
    EncodedLabels,
    StackedOneVsRest,
    TemperatureScaledSVC,
    ToDense,
    WeightedEnsemble,
)

if TYPE_CHECKING:
    import optuna

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


def _suggest_logreg(trial: optuna.Trial) -> Params:
    return {"C": trial.suggest_float("C", 1.0, 100.0, log=True)}


def _head_logreg(p: Params, seed: int, n_jobs: int, dense: bool = False) -> list[tuple[str, Any]]:
    """One-vs-rest liblinear: fast on wide sparse TF-IDF, and it releases the GIL, so studies
    running side by side in threads do not stall each other (lbfgs holds it for minutes). With a
    dense block (the encoder's 384 columns in every row) the dual solver crawls, so the primal
    one (trust-region Newton) fits: on 6,314 IT tickets with the encoder 31 s against 52 s, same
    model (TF-IDF alone: 19 s against 15 s, so the dual stays there)."""
    binary = LogisticRegression(
        C=p["C"],
        class_weight="balanced",
        solver="liblinear",
        dual=not dense,
        max_iter=300,
        random_state=seed,
    )
    return [("clf", StackedOneVsRest(binary))]


def _suggest_svm(trial: optuna.Trial) -> Params:
    return {"C": trial.suggest_float("C", 0.1, 3.0, log=True)}


def _head_svm(p: Params, seed: int, n_jobs: int, dense: bool = False) -> list[tuple[str, Any]]:
    return [("clf", TemperatureScaledSVC(C=p["C"], class_weight="balanced", random_state=seed))]


def _suggest_forest(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 1000, 8000, step=500),
        "n_estimators": trial.suggest_int("n_estimators", 100, 400, step=50),
        "max_features": trial.suggest_categorical("max_features", ["sqrt", "log2"]),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 3),
        "class_weight": trial.suggest_categorical("class_weight", ["balanced_subsample", None]),
    }


def _forest_defaults() -> Params:
    return {
        "k": 4000,
        "n_estimators": 300,
        "max_features": "sqrt",
        "min_samples_leaf": 1,
        "class_weight": "balanced_subsample",
    }


def _select(k: int) -> tuple[str, Any]:
    return ("select", SelectKBest(chi2, k=k))


def _forest_head(forest: type) -> Callable[[Params, int, int, bool], list[tuple[str, Any]]]:
    """Random forest and extra trees share their search space and their head."""

    def head(p: Params, seed: int, n_jobs: int, dense: bool = False) -> list[tuple[str, Any]]:
        model = forest(
            n_estimators=p["n_estimators"],
            max_features=p["max_features"],
            min_samples_leaf=p["min_samples_leaf"],
            class_weight=p["class_weight"],
            n_jobs=n_jobs,
            random_state=seed,
        )
        return [_select(p["k"]), ("clf", model)]

    return head


def _suggest_hgb(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 300, 1500, step=100),
        "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 7, 31),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-3, 10.0, log=True),
    }


def _head_hgb(p: Params, seed: int, n_jobs: int, dense: bool = False) -> list[tuple[str, Any]]:
    model = HistGradientBoostingClassifier(
        learning_rate=p["learning_rate"],
        max_iter=200,
        max_leaf_nodes=p["max_leaf_nodes"],
        l2_regularization=p["l2_regularization"],
        max_bins=32,
        early_stopping=True,
        n_iter_no_change=8,
        random_state=seed,
    )
    return [_select(p["k"]), ("dense", ToDense()), ("clf", model)]


def _suggest_xgb(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 500, 2000, step=250),
        "n_estimators": trial.suggest_int("n_estimators", 50, 250, step=50),
        "max_depth": trial.suggest_int("max_depth", 3, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
    }


def _head_xgb(p: Params, seed: int, n_jobs: int, dense: bool = False) -> list[tuple[str, Any]]:
    model = XGBClassifier(
        n_estimators=p["n_estimators"],
        max_depth=p["max_depth"],
        learning_rate=p["learning_rate"],
        subsample=p["subsample"],
        colsample_bytree=p["colsample_bytree"],
        tree_method="hist",
        max_bin=32,
        n_jobs=n_jobs,
        random_state=seed,
        verbosity=0,
    )
    return [_select(p["k"]), ("clf", EncodedLabels(model))]


def _suggest_lgbm(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 500, 2000, step=250),
        "n_estimators": trial.suggest_int("n_estimators", 50, 250, step=50),
        "num_leaves": trial.suggest_int("num_leaves", 8, 64, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.2, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 30),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
    }


def _head_lgbm(p: Params, seed: int, n_jobs: int, dense: bool = False) -> list[tuple[str, Any]]:
    model = LGBMClassifier(
        n_estimators=p["n_estimators"],
        num_leaves=p["num_leaves"],
        learning_rate=p["learning_rate"],
        min_child_samples=p["min_child_samples"],
        colsample_bytree=p["colsample_bytree"],
        class_weight="balanced",
        max_bin=32,
        n_jobs=n_jobs,
        random_state=seed,
        verbose=-1,
    )
    return [_select(p["k"]), ("clf", model)]


REGISTRY: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "logistic_regression",
            _suggest_logreg,
            _head_logreg,
            {"C": 20.0},
            True,
            True,
            encoder=True,
        ),
        Family("linear_svm", _suggest_svm, _head_svm, {"C": 0.5}, True, True, encoder=True),
        Family(
            "random_forest",
            _suggest_forest,
            _forest_head(RandomForestClassifier),
            _forest_defaults(),
        ),
        Family(
            "extra_trees", _suggest_forest, _forest_head(ExtraTreesClassifier), _forest_defaults()
        ),
        Family(
            "gradient_boosting",
            _suggest_hgb,
            _head_hgb,
            {"k": 800, "learning_rate": 0.1, "max_leaf_nodes": 15, "l2_regularization": 1.0},
        ),
        Family(
            "xgboost",
            _suggest_xgb,
            _head_xgb,
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
            _suggest_lgbm,
            _head_lgbm,
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
