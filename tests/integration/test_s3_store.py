"""The S3 image store against a real S3-compatible HTTP server (moto's server mode), through boto3.

The generator stores its drafts there and the critic reads them back by URI, as in a deployment whose workers share
a bucket instead of a disk.
"""

import hashlib
import io

import boto3
import pytest
from PIL import Image

from agents.critic import QualityCritic
from agents.generator import Generator
from infra.diffusion import DiffusersTextToImage
from streams.backends import open_image_store
from infra.s3_store import S3ImageStore, S3StoreError
from schemas.records import EnrichedPromptRecord, GenerationParams, ImageRequest
from streams.local import free_port

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, unique):
    # moto accepts any credentials; boto3 still needs some to sign requests.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"gapstream-{unique}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def record(request_id: str, seeds=(4, 8)) -> EnrichedPromptRecord:
    request = ImageRequest(request_id=request_id, user_id="erin", prompt="a lighthouse at dusk")
    return EnrichedPromptRecord(
        request_id=request_id, user_id="erin", round=1, request=request,
        prompt="a lighthouse at dusk, oil painting", negative_prompt="blurry",
        params=GenerationParams(width=64, height=64, steps=2, guidance=1.0, seeds=list(seeds)),
    )


async def test_generated_drafts_land_in_s3_and_read_back_by_uri(s3_endpoint, bucket, unique):
    store = open_image_store(f"s3://{bucket}/gen", s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    assert isinstance(store, S3ImageStore)
    rec = record(f"s3-{unique}")
    out = await Generator(DiffusersTextToImage.tiny(), store)(rec)

    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for i, ref in enumerate(out.images):
        assert ref.uri == f"s3://{bucket}/gen/{rec.request_id}/r1-d{i}-{ref.seed}.png"
        data = store.get(ref.uri)
        assert hashlib.sha256(data).hexdigest() == ref.sha256
        obj = raw.get_object(Bucket=bucket, Key=f"gen/{rec.request_id}/r1-d{i}-{ref.seed}.png")
        assert obj["ContentType"] == "image/png" and obj["Body"].read() == data
        image = Image.open(io.BytesIO(data))
        assert image.size == (64, 64)
        assert image.text["prompt"] == rec.prompt and image.text["seed"] == str(ref.seed)

    # The critic, in another process in a deployment, reads the drafts through the same kind of store.
    reader = S3ImageStore(bucket, "gen", endpoint_url=s3_endpoint, region="us-east-1")
    critique = await QualityCritic(reader)(out)
    assert len(critique.critique.drafts) == 2


def test_errors_are_clear_and_say_whether_to_retry(s3_endpoint, bucket):
    store = S3ImageStore(bucket, "gen", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(S3StoreError, match="NoSuchKey") as missing:
        store.get(f"s3://{bucket}/gen/nope.png")
    assert missing.value.retriable is False
    with pytest.raises(ValueError, match="bucket"):
        store.get("s3://another-bucket/gen/x.png")
    with pytest.raises(ValueError, match="prefix"):
        store.get(f"s3://{bucket}/elsewhere/x.png")

    absent = S3ImageStore(f"{bucket}-absent", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(S3StoreError, match="NoSuchBucket") as no_bucket:
        absent.put(b"png", "x.png")
    assert no_bucket.value.retriable is False

    down = S3ImageStore(bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    with pytest.raises(S3StoreError) as unreachable:
        down.put(b"png", "x.png")
    assert unreachable.value.retriable is True
    assert "testing" not in str(unreachable.value)  # no credentials in messages
