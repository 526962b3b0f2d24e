"""Static token embeddings: BERT's WordPiece, checked files, unit-length weighted rows."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core import embeddings
from core.embeddings import (
    EmbeddingUnavailableError,
    StaticTokenEmbedding,
    token_ids,
    token_table,
)


@pytest.fixture
def fresh_tables() -> Iterator[None]:
    """Tests that swap the model files must not see, nor leave, a cached table."""
    token_table.cache_clear()
    embeddings._chunk_ids.cache_clear()
    yield
    token_table.cache_clear()
    embeddings._chunk_ids.cache_clear()


def _pieces(text: str, max_tokens: int = 512) -> list[str]:
    by_id = {row: piece for piece, row in token_table().vocabulary.items()}
    return [by_id[i] for i in token_ids(text, max_tokens)]


def test_wordpiece_splits_like_bert_uncased() -> None:
    assert _pieces("I can't log in!") == ["i", "can", "'", "t", "log", "in", "!"]
    assert _pieces("Extra 1£ charge") == ["extra", "1", "##£", "charge"]  # symbols stay in words
    assert _pieces("SESIÓN") == _pieces("sesion")  # lowercased, accents stripped
    assert _pieces("x" * 101) == ["[UNK]"]
    assert _pieces("reimbursement")[0] == "rei"
    assert all(piece.startswith("##") for piece in _pieces("reimbursement")[1:])


def test_token_ids_stop_at_the_budget() -> None:
    assert len(token_ids("card " * 50, max_tokens=7)) == 7
    assert token_ids("", max_tokens=7) == []


def test_rows_have_the_block_weight_as_length_and_empty_texts_are_zero() -> None:
    block = StaticTokenEmbedding(weight=2.0).fit(None)
    rows = block.transform(["my card was declined", "", "   "]).toarray()
    assert rows.shape == (3, 384)
    assert np.linalg.norm(rows[0]) == pytest.approx(2.0, rel=1e-5)
    assert not rows[1:].any()


def test_related_words_land_closer_than_unrelated_ones() -> None:
    """The point of the block: TF-IDF sees no overlap between these, the table does."""
    block = StaticTokenEmbedding().fit(None)
    money, refund, printer = block.transform(
        ["money back", "refund reimbursement", "printer toner cartridge"]
    ).toarray()
    assert money @ refund > money @ printer + 0.1


def test_a_changed_model_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tables: None
) -> None:
    original = embeddings.model_dir()
    copy = tmp_path / "model"
    copy.mkdir()
    shutil.copy(original / "model.safetensors", copy / "model.safetensors")
    (copy / "vocab.txt").write_text((original / "vocab.txt").read_text() + "extra\n")
    monkeypatch.setattr(embeddings, "model_dir", lambda: copy)
    with pytest.raises(EmbeddingUnavailableError, match=r"vocab\.txt does not match"):
        StaticTokenEmbedding().fit(None)


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch, fresh_tables: None) -> None:
    monkeypatch.setattr(embeddings, "EMBEDDING_PACKAGE", "no_such_embedding_package")
    with pytest.raises(EmbeddingUnavailableError, match="no_such_embedding_package"):
        StaticTokenEmbedding().fit(None)
