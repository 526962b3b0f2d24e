"""Artifact store: a local folder (default) or S3 through boto3.

Keys are relative paths. The champion pointer is swapped with compare-and-set: a lock and an
atomic rename locally, a conditional PUT (If-Match / If-None-Match on the ETag) on S3, so two
racing promotions cannot both win and a reader never sees half a pointer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import StoreError, TooLargeError, TransientStoreError
from core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHAMPION_KEY = "champion.json"


class ArtifactStore(Protocol):
    """What the rest of the system needs from a store."""

    @property
    def url(self) -> str: ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """The object and an opaque version token (None, None when absent)."""
        ...

    def compare_and_put(self, key: str, data: bytes, expected: str | None) -> bool:
        """Write only if the object's version is still ``expected`` (None: must not exist)."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; removing one that is absent is not an error."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""
        ...

    def uri(self, key: str) -> str: ...


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class LocalStore:
    """A folder; writes go to a temporary file and are renamed into place."""

    root: Path

    @property
    def url(self) -> str:
        return self.root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StoreError(f"key {key!r} escapes the store")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".tmp-") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"{self.uri(key)} does not exist") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        if not self.exists(key):
            return None, None
        data = self.get(key)
        return data, _digest(data)

    def compare_and_put(self, key: str, data: bytes, expected: str | None) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _, current = self.read_versioned(key)
            if current != expected:
                return False
            self.put(key, data)
            return True

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        root = self.root.resolve()
        base = self._path(prefix) if prefix else root
        if not base.exists():
            return []
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        return sorted(
            str(path.relative_to(root)) for path in files if not path.name.startswith(".")
        )

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


@dataclass
class S3Store:
    """A bucket and prefix on S3 or an S3-compatible server."""

    client: S3Client
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key

    def put(self, key: str, data: bytes) -> None:
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        data, _ = self.read_versioned(key)
        if data is None:
            raise StoreError(f"{self.uri(key)} does not exist")
        return data

    def exists(self, key: str) -> bool:
        with self._errors("read", key, absent_ok=True):
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        return False

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        with self._errors("read", key, absent_ok=True):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), response["ETag"]
        return None, None

    def compare_and_put(self, key: str, data: bytes, expected: str | None) -> bool:
        bucket, full_key = self.bucket, self._key(key)
        with self._errors("write", key, conflict_ok=True):
            if expected:
                self.client.put_object(Bucket=bucket, Key=full_key, Body=data, IfMatch=expected)
            else:
                self.client.put_object(Bucket=bucket, Key=full_key, Body=data, IfNoneMatch="*")
            return True
        return False

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        base = self._key("")
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                keys += [item["Key"].removeprefix(base) for item in page.get("Contents", [])]
        return sorted(keys)

    @contextlib.contextmanager
    def _errors(
        self, action: str, key: str, absent_ok: bool = False, conflict_ok: bool = False
    ) -> Iterator[None]:
        """botocore's failures as StoreError (TransientStoreError for timeouts, connection
        failures, throttling and 5xx). A 404 (with ``absent_ok``) or a failed precondition (with
        ``conflict_ok``) leaves the block quietly, so the caller's fallback runs."""
        try:
            yield
        except ClientError as exc:
            status = _status(exc)
            if (absent_ok and status == 404) or (conflict_ok and status in (409, 412)):
                return
            kind = TransientStoreError if status >= 500 or status == 429 else StoreError
            raise kind(f"cannot {action} {self.uri(key)}: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientStoreError(f"cannot {action} {self.uri(key)}: {exc}") from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def s3_client(settings: Settings) -> S3Client:
    """A boto3 S3 client honouring the configured endpoint (MinIO, moto) and AWS variables, with
    connect and read timeouts and bounded standard retries (botocore's defaults wait a minute
    per read and retry legacy-style), so a hung store costs seconds, not the caller's loop."""
    config = Config(
        connect_timeout=settings.s3_connect_timeout_s,
        read_timeout=settings.s3_read_timeout_s,
        retries={"mode": "standard", "max_attempts": settings.s3_max_attempts},
    )
    key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        config=config,
        region_name=settings.s3_region,
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )


def split_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"not an s3:// URL: {url}")
    return parsed.netloc, parsed.path.lstrip("/")


def open_store(settings: Settings) -> ArtifactStore:
    """The store named by ``settings.artifact_store_url()``."""
    url = settings.artifact_store_url()
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        bucket, prefix = split_s3_url(url)
        return S3Store(s3_client(settings), bucket, prefix)
    if parsed.scheme in ("file", ""):
        return LocalStore(Path(unquote(parsed.path) if parsed.scheme else url))
    raise StoreError(f"unsupported store URL {url!r}: use file:// or s3://")


def read_location(location: str, settings: Settings, max_bytes: int | None = None) -> bytes:
    """Bytes of a local path or an s3:// object; with ``max_bytes`` a larger one is refused
    (``TooLargeError``) before it is read."""

    def check(size: int | None) -> None:
        if max_bytes is not None and size is not None and size > max_bytes:
            raise TooLargeError(
                f"{location}: {size:,} bytes is more than the {max_bytes:,} allowed "
                "(TICKETS_INTAKE_MAX_BYTES)"
            )

    if location.startswith("s3://"):
        bucket, key = split_s3_url(location)
        try:
            response = s3_client(settings).get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise StoreError(f"{location}: cannot read ({_status(exc) or exc})") from exc
        check(response.get("ContentLength"))
        body = response["Body"]
        data = body.read(None if max_bytes is None else max_bytes + 1)
        body.close()
        check(len(data))
        return bytes(data)
    path = Path(unquote(urlparse(location).path) if location.startswith("file://") else location)
    try:
        check(path.stat().st_size)
        with path.open("rb") as handle:
            data = handle.read(-1 if max_bytes is None else max_bytes + 1)
    except OSError as exc:
        raise StoreError(f"{location}: cannot read ({exc.strerror or exc})") from exc
    check(len(data))
    return data


def read_json(store: ArtifactStore, key: str) -> dict[str, Any] | None:
    """A JSON object from the store, or None when absent."""
    data, _ = store.read_versioned(key)
    return None if data is None else dict(json.loads(data))
