"""An image store in any S3-compatible object store (AWS S3, MinIO, R2, Ceph…), addressed by `s3://` URIs.

`GAPSTREAM_IMAGE_STORE=s3://bucket/prefix` selects it; `GAPSTREAM_S3_ENDPOINT_URL` points it at a store other than
AWS. Credentials come from boto3's usual chain (environment, profile, instance role) and are never logged.
boto3 belongs to the optional `s3` extra and is imported only when this store is built.
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlparse

from infra.image_store import safe_parts


class S3StoreError(Exception):
    """An S3 call that failed; `retriable` says whether trying again may help (throttling, 5xx, network)."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ImportError(
            f"the S3 image store needs the optional dependencies of the s3 extra ({exc.name} is missing): "
            "pip install 'gapstream[s3]'"
        ) from exc
    return boto3


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` → (bucket, key); key may be empty."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


_RETRIABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "RequestTimeTooSkewed"}


class S3ImageStore:
    """Images as objects under `s3://bucket/prefix/`; `put` returns the object's `s3://` URI."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: Optional[str] = None,
        region: Optional[str] = None,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 image store needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = "/".join(safe_parts(prefix)) if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        if client is None:
            boto3 = _boto3()
            from botocore.config import Config

            client = boto3.client(
                "s3", endpoint_url=endpoint_url, region_name=region,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
            )
        self.client = client

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> "S3ImageStore":
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket, prefix, **kwargs)

    def key_for(self, name: str) -> str:
        key = "/".join(safe_parts(name))
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, data: bytes, name: str) -> str:
        """Upload `data` under `name` (a second put of the same name replaces the object); return its URI."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        key = self.key_for(name)
        content_type = "image/png" if key.endswith(".png") else "application/octet-stream"
        self._call("put", key, lambda: self.client.put_object(
            Bucket=self.bucket, Key=key, Body=bytes(data), ContentType=content_type))
        return f"s3://{self.bucket}/{key}"

    def get(self, uri: str) -> bytes:
        """The bytes of an object this store holds (an `s3://` URI in its bucket and prefix, or a relative key)."""
        if uri.startswith("s3://"):
            bucket, key = parse_s3_uri(uri)
            if bucket != self.bucket:
                raise ValueError(f"{uri!r} is in bucket {bucket!r}; this store reads {self.bucket!r} only")
            if self.prefix and not key.startswith(self.prefix + "/"):
                raise ValueError(f"{uri!r} is outside the store prefix {self.prefix!r}")
        elif "://" in uri:
            raise ValueError(f"{uri!r} is not an s3:// URI")
        else:
            key = self.key_for(uri)
        response = self._call("get", key, lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        return response["Body"].read()

    def _call(self, what: str, key: str, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            retriable = code in _RETRIABLE_CODES or int(status) >= 500
            raise S3StoreError(f"S3 {what} s3://{self.bucket}/{key} failed: {code} {error.get('Message', '')}".strip(),
                               retriable=retriable) from None
        except BotoCoreError as exc:  # connection refused, timeouts, no credentials
            retriable = "Credentials" not in type(exc).__name__
            raise S3StoreError(f"S3 {what} s3://{self.bucket}/{key} failed: {type(exc).__name__}: {exc}",
                               retriable=retriable) from None

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3ImageStore('s3://{self.bucket}/{self.prefix}'{where})"
