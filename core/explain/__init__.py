"""Why a ticket got its label: contributions of the ticket's own words to a class's score.

- Linear families (logistic regression, linear SVM): exact. A class's score (its one-vs-rest
  log-odds, or the SVM's decision value) is the intercept plus, over the features, feature value
  times coefficient; a dense block (token table, sentence encoder) is one named contribution.
- XGBoost and LightGBM: their native SHAP values (``pred_contribs`` / ``pred_contrib``), which
  add up to the class's raw margin, bias included.
- Random forest, extra trees, histogram gradient boosting: occlusion. Each word's weight is how
  much the class's probability drops when that word is removed from the ticket (one batch of
  re-scored variants). Not additive: no intercept, and the share says how much of the total
  absolute effect the shown words carry.

Features are mapped back to words as ELI5's weighted spans do (``words.py``): every n-gram the
model counted is found in the ticket (word n-grams over the words' normalised tokens, character
n-grams over the normalised text with each character owned by the word it came from); a
feature's contribution is split evenly between its occurrences, a word n-gram's evenly between
its words, and a character n-gram's by the characters each word owns in it. What cannot be
placed on a word is reported as ``unplaced``, so the parts still add up to the score.
``attribution.py`` computes the contributions, ``global_view.py`` a model's view per class."""

from core.explain.attribution import (
    ClassExplanation,
    Explanation,
    WordWeight,
    explain,
    word_sum,
)
from core.explain.global_view import global_terms, top_terms_per_class
from core.explain.words import Word, ticket_words

__all__ = [
    "ClassExplanation",
    "Explanation",
    "Word",
    "WordWeight",
    "explain",
    "global_terms",
    "ticket_words",
    "top_terms_per_class",
    "word_sum",
]
