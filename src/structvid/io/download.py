"""Downloads of public files a user needs (pretrained extractor weights): pinned URL + SHA-256, cached.

    path = fetch("vgg16")                       # ~/.cache/structvid/vgg16-397923af.pth, verified

The cache folder is $STRUCTVID_CACHE, else $XDG_CACHE_HOME/structvid, else ~/.cache/structvid. A file is
streamed to a temporary name, verified, then renamed, so an interrupted or corrupted download is never
mistaken for a good one. Offline machines: put the file in the cache folder (or pass its path directly
wherever a weights file is asked for).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from structvid.errors import UserError
from structvid.io.files import atomic_path


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    sha256: str  # full digest, or a prefix of it (torchvision publishes 8-hex-digit prefixes in file names)
    what: str


KNOWN: dict[str, RemoteFile] = {
    # C_1 of Eq. 21 (§7.3): torchvision's ImageNet VGG16; its name carries the SHA-256 prefix torchvision checks.
    "vgg16": RemoteFile("https://download.pytorch.org/models/vgg16-397923af.pth", "vgg16-397923af.pth",
                        "397923af", "VGG16 ImageNet weights (torchvision layout) for the feature loss"),
    # `structvid demo --task face` without ../shared/data/faces: LivePortrait's MIT-licensed examples (a portrait and
    # a driving video), pinned by the checksums of the copies the demo was made with
    "face_demo_portrait": RemoteFile(
        "https://raw.githubusercontent.com/KwaiVGI/LivePortrait/main/assets/examples/source/s42.jpg", "s42.jpg",
        "163513ea9635bf2693f0252c2c1e0fae288f4bfd64f16f072058c7d679563911", "the face demo's portrait (LivePortrait, MIT)"),
    "face_demo_reference": RemoteFile(
        "https://raw.githubusercontent.com/KwaiVGI/LivePortrait/main/assets/examples/driving/d0.mp4", "d0.mp4",
        "63f6f9962e1fdf6e6722172e7a18155204858d5d5ce3b1e0646c150360c33bed", "the face demo's reference video "
        "(LivePortrait, MIT)"),
}


def cache_dir() -> Path:
    if os.environ.get("STRUCTVID_CACHE"):
        return Path(os.environ["STRUCTVID_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "structvid"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name_or_file: str | RemoteFile, directory: str | Path | None = None, progress: bool = True) -> Path:
    """Return the cached, verified local path of a known file, downloading it first if needed."""
    if isinstance(name_or_file, RemoteFile):
        remote = name_or_file
    elif name_or_file in KNOWN:
        remote = KNOWN[name_or_file]
    else:
        raise UserError(f"unknown download {name_or_file!r}; known: {sorted(KNOWN)}")
    target = Path(directory) if directory is not None else cache_dir()
    path = target / remote.filename
    if path.is_file():
        if sha256_of(path).startswith(remote.sha256):
            return path
        raise UserError(f"cached file does not match its pinned SHA-256 ({remote.sha256}…); delete it and retry", path)
    try:
        with urllib.request.urlopen(remote.url, timeout=60) as response, atomic_path(path) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=remote.filename,
                                              disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            digest = sha256_of(tmp)
            if not digest.startswith(remote.sha256):
                raise UserError(f"downloaded file has SHA-256 {digest}, expected {remote.sha256}…", remote.url)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise UserError(
            f"cannot download {remote.what} ({e.__class__.__name__}: {e}); on an offline machine place the file "
            f"at {path} or pass its path directly",
            remote.url,
        ) from None
    return path
