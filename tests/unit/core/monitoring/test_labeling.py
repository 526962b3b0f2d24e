"""The label queue's choice: uncertain and novel first, per-class quotas, no near-duplicates."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from core.monitoring.labeling import label_queue


def _rows(specs: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """(text, predicted class, its probability, the runner-up's) per row."""
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(len(specs))],
            "created_at": ["2026-12-01T00:00:00"] * len(specs),
            "short_description": [text for text, *_ in specs],
            "close_notes": [""] * len(specs),
            "prediction": [label for _, label, *_ in specs],
            "confidence": [p for _, _, p, _ in specs],
            "top_probabilities": [json.dumps({label: p, "otra": q}) for _, label, p, q in specs],
        }
    )


VOCABULARY = {"clave", "bloqueada", "pago", "rechazado", "extracto", "mes", "numtoken"}
WORDS = [f"palabra{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(100)]


def test_the_most_uncertain_come_first_and_novel_words_count() -> None:
    rows = _rows(
        [
            ("clave bloqueada", "acceso", 0.95, 0.03),
            ("pago rechazado", "acceso", 0.50, 0.45),
            ("extracto del mes", "acceso", 0.70, 0.20),
            ("stablecoin billetera cripto", "acceso", 0.90, 0.05),
        ]
    )
    queue = label_queue(rows, VOCABULARY, "spanish", 4)
    order = [entry.request_id for entry in queue]
    assert order[0] == "r1" and order.index("r2") < order.index("r0")
    novel = next(entry for entry in queue if entry.request_id == "r3")
    assert novel.novelty == 1.0 and "100% of its words unknown" in novel.reason
    assert order.index("r3") < order.index("r0"), "novelty lifts a confident ticket"
    assert queue[0].runner_up == "otra" and abs(queue[0].margin - 0.05) < 1e-9


def test_rare_classes_get_their_share_and_a_busy_one_gives_way() -> None:
    busy = [(f"pago rechazado {WORDS[i]}", "pagos", 0.4, 0.35) for i in range(60)]
    rare = [(f"extracto del mes {WORDS[i]}", "extractos", 0.9, 0.05) for i in range(2)]
    other = [(f"clave bloqueada {WORDS[i]}", "acceso", 0.8, 0.1) for i in range(30)]
    queue = label_queue(_rows(busy + rare + other), VOCABULARY, "spanish", 12)
    counts = Counter(entry.prediction for entry in queue)
    assert counts == {"extractos": 2, "acceso": 5, "pagos": 5}


def test_near_duplicates_are_left_out_of_a_batch() -> None:
    same = [("no funciona la app del banco error al ingresar", "acceso", 0.5, 0.4)] * 20
    close = [("no funciona la app del banco error al ingresar hoy", "acceso", 0.5, 0.45)]
    different = [("clave bloqueada tras tres intentos", "acceso", 0.6, 0.3)]
    queue = label_queue(_rows(same + close + different), VOCABULARY, "spanish", 10)
    assert len(queue) == 2
    assert {entry.short_description[:9] for entry in queue} == {"no funcio", "clave blo"}


def test_an_empty_window_gives_an_empty_queue() -> None:
    assert label_queue(_rows([]), VOCABULARY, "spanish", 10) == []
