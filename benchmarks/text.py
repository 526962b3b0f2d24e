"""Text benchmark: the normaliser's cost on ordinary and on adversarial tickets of 10,000
characters (one long token, an e-mail-like run, unclosed script tags), against what the old
backtracking patterns cost on the same inputs. Every input should cost about what prose costs.
Prints and saves benchmarks/results/text.json. Run: ``.venv/bin/python -m benchmarks.text``."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable

from benchmarks.common import save
from core.text import EMAIL_TOKEN, clean, mask_emails, normalize, strip_script_style

_OLD_SCRIPT_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_OLD_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def inputs(chars: int) -> dict[str, str]:
    prose = "No puedo ingresar al portal, la clave quedó bloqueada tras tres intentos. "
    return {
        "prose": (prose * (chars // len(prose) + 1))[:chars],
        "one_token": "a" * chars,
        "email_like_run": ("x@" + "a" * chars)[:chars],
        "chained_ats": ("a@" * chars)[:chars],
        "unclosed_script_tags": ("<script" * chars)[:chars],
    }


def best_of(function: Callable[[str], str], text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.text", description=__doc__)
    parser.add_argument("--chars", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    old = {
        "old_email_pattern": lambda text: _OLD_EMAIL.sub(f" {EMAIL_TOKEN} ", text),
        "old_script_pattern": lambda text: _OLD_SCRIPT_STYLE.sub(" ", text),
    }
    new = {"email_scanner": mask_emails, "script_scanner": strip_script_style}
    rows = {}
    for name, text in inputs(args.chars).items():
        row = {
            "normalize_ms": round(1000 * best_of(normalize, text, args.repeats), 3),
            "clean_ms": round(1000 * best_of(clean, text, args.repeats), 3),
        }
        for label, function in {**new, **old}.items():
            row[f"{label}_ms"] = round(1000 * best_of(function, text, 1), 3)
        rows[name] = row
        print(f"{name:>22}: {row}", flush=True)
    prose = rows["prose"]["normalize_ms"]
    worst = max(row["normalize_ms"] for row in rows.values())
    save(
        "text",
        {
            "chars": args.chars,
            "inputs": rows,
            "worst_normalize_vs_prose": round(worst / prose, 2),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
