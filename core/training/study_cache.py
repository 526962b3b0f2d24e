"""Finished studies kept on disk, so that a rerun after a failure does not search again.

A cache file is data, never code: it is JSON read with ``json.loads`` and checked field by field
against ``StudyResult``, and nothing in it names a serializer or a class to import (Prefect's
result files do, and a file rewritten to name pickle ran code in the worker). Each record also
carries an HMAC of its key and content under a secret kept beside the cache, so a record that was
edited (a better score, another family's parameters) or copied from elsewhere is ignored and the
study runs again.

With an S3 artifact store, every record is also written there (``study-results/``), and a study
missing from the local folder is looked up there: a flow retried on another worker (another
machine, another pod) finds the studies the failed run finished. The workers then share the
signing key through ``TICKETS_STUDY_CACHE_KEY``; with keys of their own, each ignores the others'
records and searches again (safe, only slower)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import pydantic

from core.auth.local_secrets import local_secret
from core.io.store import ArtifactStore, open_store
from core.settings import Settings
from core.training.tuning import StudyResult

log = logging.getLogger(__name__)
FORMAT = 1
#: How long a finished study is reused by a rerun (and kept before maintenance prunes it).
STUDY_CACHE_AGE_S = 7 * 86400
_RESULT = pydantic.TypeAdapter(StudyResult)


def _signature(secret: bytes, key: str, saved_at: float, result: str) -> str:
    message = f"{FORMAT}\n{key}\n{saved_at!r}\n{result}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class StudyCache:
    """One JSON file per study key in ``folder``; records older than ``max_age_s`` count as
    absent (and ``prune`` deletes them)."""

    def __init__(
        self,
        folder: Path,
        secret: str,
        max_age_s: float = STUDY_CACHE_AGE_S,
        shared: ArtifactStore | None = None,
    ) -> None:
        self.folder = folder
        self._secret = secret.encode()
        self.max_age_s = max_age_s
        #: Where records also go for other machines (an S3 store), if anywhere.
        self.shared = shared

    def _name(self, key: str) -> str:
        # The key is ours (family, fingerprints, budget), but a file name never trusts it.
        return hashlib.sha256(key.encode()).hexdigest()[:40] + ".json"

    def _path(self, key: str) -> Path:
        return self.folder / self._name(key)

    def _read(self, key: str) -> str | None:
        path = self._path(key)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            pass
        if self.shared is None:
            return None
        data, _ = self.shared.read_versioned(f"study-results/{self._name(key)}")
        return None if data is None else data.decode("utf-8", errors="replace")

    def load(self, key: str) -> StudyResult | None:
        """The stored result for ``key``, or None when there is none, it is too old, or it is
        not exactly what this cache wrote (unreadable, wrong shape, bad signature)."""
        path = self._path(key)
        try:
            text = self._read(key)
            if text is None:
                return None
            record = json.loads(text)
        except (OSError, ValueError) as exc:
            log.warning("study cache: %s is unreadable (%s); the study runs again", path, exc)
            return None
        try:
            saved_at = float(record["saved_at"])
            result = str(record["result"])
            expected = _signature(self._secret, key, saved_at, result)
            if record.get("format") != FORMAT or record.get("key") != key:
                raise ValueError("another format or key")
            if not hmac.compare_digest(str(record["signature"]), expected):
                raise ValueError("its signature does not match")
            study = _RESULT.validate_python(json.loads(result))
        except (KeyError, TypeError, ValueError, pydantic.ValidationError) as exc:
            log.warning("study cache: %s ignored (%s); the study runs again", path, exc)
            return None
        if time.time() - saved_at > self.max_age_s:
            return None
        return study

    def save(self, key: str, study: StudyResult) -> Path:
        """Write the record atomically (a reader sees the old file or the new, never half)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        result = json.dumps(dataclasses.asdict(study), sort_keys=True)
        saved_at = time.time()
        record = {
            "format": FORMAT,
            "key": key,
            "saved_at": saved_at,
            "result": result,
            "signature": _signature(self._secret, key, saved_at, result),
        }
        path = self._path(key)
        fd, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        if self.shared is not None:
            self.shared.put(f"study-results/{self._name(key)}", path.read_bytes())
        return path

    def prune(self, now: float | None = None) -> int:
        """Delete records older than ``max_age_s`` (and stray temporary files; in the shared
        store, by the time each record says it was saved); returns how many went."""
        cutoff = (time.time() if now is None else now) - self.max_age_s
        removed = self._prune_shared(cutoff) if self.shared is not None else 0
        if not self.folder.is_dir():
            return removed
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def _prune_shared(self, cutoff: float) -> int:
        assert self.shared is not None
        removed = 0
        for key in self.shared.list("study-results/"):
            data, _ = self.shared.read_versioned(key)
            try:
                saved_at = float(json.loads(data or b"{}")["saved_at"])
            except (KeyError, TypeError, ValueError):
                saved_at = 0.0  # not a record this cache wrote
            if saved_at < cutoff:
                self.shared.delete(key)
                removed += 1
        return removed


def open_study_cache(settings: Settings) -> StudyCache:
    """The cache under ``home`` (``study-results``), signed with a key kept beside it in
    ``home`` (``study-cache.key``, created on first use, readable by its owner only, unless
    ``TICKETS_STUDY_CACHE_KEY`` gives one), shared through the artifact store when that is S3."""
    home = settings.home
    configured = settings.study_cache_key.get_secret_value() if settings.study_cache_key else None
    secret = local_secret(home, "study-cache.key", "TICKETS_STUDY_CACHE_KEY", configured)
    shared = open_store(settings) if settings.artifact_store_url().startswith("s3://") else None
    return StudyCache(home / "study-results", secret, shared=shared)
