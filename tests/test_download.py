import hashlib

import pytest

from structvid.errors import UserError
from structvid.io.download import KNOWN, RemoteFile, fetch


def _remote(tmp_path, data: bytes, digest: str | None = None) -> RemoteFile:
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    return RemoteFile(src.as_uri(), "weights.bin", digest or hashlib.sha256(data).hexdigest(), "test weights")


def test_fetch_downloads_verifies_and_caches(tmp_path):
    remote = _remote(tmp_path, b"abc" * 1000)
    path = fetch(remote, tmp_path / "cache", progress=False)
    assert path.read_bytes() == b"abc" * 1000
    (tmp_path / "src.bin").unlink()  # second call is served from the cache
    assert fetch(remote, tmp_path / "cache", progress=False) == path


def test_checksum_mismatch_leaves_nothing(tmp_path):
    remote = _remote(tmp_path, b"payload", digest="0" * 64)
    with pytest.raises(UserError, match="SHA-256"):
        fetch(remote, tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache").iterdir())


def test_unreachable_url_is_a_clear_error(tmp_path):
    remote = RemoteFile((tmp_path / "missing.bin").as_uri(), "w.bin", "00", "test weights")
    with pytest.raises(UserError, match="cannot download test weights"):
        fetch(remote, tmp_path / "cache", progress=False)
    with pytest.raises(UserError, match="unknown download"):
        fetch("nope")


def test_vgg16_is_pinned():
    assert KNOWN["vgg16"].url.endswith(KNOWN["vgg16"].filename) and KNOWN["vgg16"].sha256 in KNOWN["vgg16"].filename
