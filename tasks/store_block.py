"""The artifact store named by a prefect-aws ``S3Bucket`` block (TICKETS_S3_BUCKET_BLOCK), with
the ``AwsCredentials`` block inside it: resolved once when a flow starts into the settings every
task already reads (store URL, endpoint, keys), so nothing below the flow knows about blocks. The
prediction service never imports Prefect: it reads TICKETS_STORE_URL and AWS_* variables."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from core.errors import ConfigurationError
from core.settings import Settings, get_settings


def resolve_settings(settings: Settings | None = None) -> Settings:
    """``settings`` (or the environment's), with the store its S3Bucket block names."""
    settings = settings or get_settings()
    if not settings.s3_bucket_block:
        return settings
    from prefect_aws import S3Bucket

    try:
        block: Any = S3Bucket.load(settings.s3_bucket_block)
    except ValueError as exc:
        raise ConfigurationError(
            f"TICKETS_S3_BUCKET_BLOCK: no S3Bucket block named {settings.s3_bucket_block!r}"
        ) from exc
    folder = str(block.bucket_folder or "").strip("/")
    credentials = block.credentials
    update: dict[str, Any] = {
        "store_url": f"s3://{block.bucket_name}" + (f"/{folder}" if folder else ""),
        "s3_region": getattr(credentials, "region_name", None) or settings.s3_region,
    }
    endpoint = credentials.aws_client_parameters.endpoint_url
    if endpoint:
        update["s3_endpoint_url"] = str(endpoint)
    key_id = getattr(credentials, "aws_access_key_id", None)
    secret = getattr(credentials, "aws_secret_access_key", None)
    if key_id and secret:
        update["s3_access_key_id"] = SecretStr(str(key_id))
        update["s3_secret_access_key"] = secret
    return settings.model_copy(update=update)
