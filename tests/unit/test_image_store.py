"""The filesystem image store: URIs, atomic overwrite, and no way out of its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents.ports import ImageStore
from infra.image_store import FilesystemImageStore
from streams.backends import open_image_store


@pytest.fixture
def store(tmp_path) -> FilesystemImageStore:
    return FilesystemImageStore(tmp_path / "images")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_returns_a_file_uri_and_get_reads_it_back(store):
    uri = store.put(b"\x89PNG data", "req-1/r0-d0-5.png")
    path = store.root / "req-1" / "r0-d0-5.png"
    assert uri == path.as_uri() and uri.startswith("file:///")
    assert path.read_bytes() == b"\x89PNG data"
    assert store.get(uri) == b"\x89PNG data"
    assert store.get(str(path)) == b"\x89PNG data"
    assert store.get("req-1/r0-d0-5.png") == b"\x89PNG data"
    assert isinstance(store, ImageStore)


def test_put_same_name_overwrites_without_leftovers(store):
    first = store.put(b"one", "req/a.png")
    second = store.put(b"two", "req/a.png")
    assert first == second
    assert store.get(first) == b"two"
    assert files_under(store.root) == [store.root / "req" / "a.png"]  # no temp files left behind


def test_failed_write_leaves_old_file_and_no_temp(store, monkeypatch):
    uri = store.put(b"old", "req/a.png")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.put(b"new", "req/a.png")
    monkeypatch.undo()
    assert store.get(uri) == b"old"
    assert files_under(store.root) == [store.root / "req" / "a.png"]


@pytest.mark.parametrize(
    "name", ["../../evil.png", "/etc/evil.png", "../evil.png", "a/../../evil.png", "..", "req/../../x/evil.png"]
)
def test_names_cannot_escape_the_root(store, name):
    uri = store.put(b"x", name)
    path = store.resolve(uri)
    assert path.is_relative_to(store.root)
    assert store.get(uri) == b"x"
    assert not (store.root.parent / "evil.png").exists()


def test_request_ids_with_dots_colons_and_ats_round_trip(store):
    uri = store.put(b"x", "user@example.com:42/r1-d0-7.png")
    assert store.get(uri) == b"x"
    dotted = store.put(b"y", "../r0-d0-1.png")  # '..' is a valid request id, never a parent directory
    assert store.resolve(dotted).parent == store.root / "_.."


def test_odd_characters_are_replaced(store):
    uri = store.put(b"x", "a b/ü?*\x00.png")
    path = store.resolve(uri)
    assert path.parent.name == "a_b"
    assert all(c.isascii() and c.isprintable() and c not in " ?*" for c in path.name)
    assert store.get(uri) == b"x"


def test_empty_name_is_rejected(store):
    with pytest.raises(ValueError):
        store.put(b"x", "/./")


@pytest.mark.parametrize(
    "uri", ["file:///etc/passwd", "/etc/passwd", "../outside.png", "file://otherhost/x.png", "http://example.com/a.png"]
)
def test_get_refuses_anything_outside_root(store, uri):
    with pytest.raises(ValueError):
        store.get(uri)


def test_get_refuses_symlinks_that_leave_the_root(store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    (store.root / "link.png").symlink_to(secret)
    with pytest.raises(ValueError, match="outside"):
        store.get((store.root / "link.png").as_uri())
    (store.root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        store.put(b"x", "dirlink/evil.png")


def test_open_image_store_from_path_and_file_uri(tmp_path):
    by_path = open_image_store(str(tmp_path / "a"))
    assert isinstance(by_path, FilesystemImageStore) and by_path.root == (tmp_path / "a").resolve()
    by_uri = open_image_store((tmp_path / "b").as_uri())
    assert isinstance(by_uri, FilesystemImageStore) and by_uri.root == (tmp_path / "b").resolve()
    assert (tmp_path / "b").is_dir()


def test_open_image_store_s3_builds_an_s3_store_for_the_bucket_and_prefix():
    from infra.s3_store import S3ImageStore

    store = open_image_store("s3://bucket/images/gen", s3_endpoint_url="http://127.0.0.1:9", s3_region="eu-west-1")
    assert isinstance(store, S3ImageStore)
    assert (store.bucket, store.prefix, store.endpoint_url) == ("bucket", "images/gen", "http://127.0.0.1:9")
    assert store.key_for("req/../r1-d0-5.png") == "images/gen/req/_../r1-d0-5.png"


def test_s3_store_without_boto3_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ImportError, match=r"gapstream\[s3\]"):
        open_image_store("s3://bucket/images")


@pytest.mark.parametrize("spec", ["", "   ", "gs://bucket/x", "file://host/x"])
def test_open_image_store_rejects_other_specs(spec):
    with pytest.raises(ValueError):
        open_image_store(spec)
