"""The data plane's on-disk config cache: what a DP restarted without its CP serves.

One file: a header line (JSON: format, version, hash, SHA-256 of the body) and a zlib-compressed
JSON body. Written to a temporary file, flushed, fsynced and renamed over the old one, so a crash
leaves either the old cache or the new one; a file whose checksum or hash does not match is
reported and ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path

from shared import __version__
from shared.config_set import ConfigSet

log = logging.getLogger("tidegate.dp")

FORMAT = 1


def save(path: Path, version: str, config: ConfigSet) -> None:
    body = zlib.compress(json.dumps(config.to_lists(), separators=(",", ":")).encode(), 1)
    header = {"format": FORMAT, "version": version, "hash": config.hash,
              "sha256": hashlib.sha256(body).hexdigest(), "written_by": __version__}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(json.dumps(header).encode() + b"\n" + body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path) -> tuple[str, ConfigSet, bool] | None:
    """(version, config, trusted) from the cache, or None when there is none or it is damaged.

    `trusted`: this tidegate version wrote it, after validating it, and the checksum and hash
    still match, so validating it again would only repeat the same checks."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("config cache %s unreadable, ignored: %s", path, exc)
        return None
    try:
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        if header.get("format") != FORMAT:
            raise ValueError(f"unknown format {header.get('format')!r}")
        if hashlib.sha256(body).hexdigest() != header["sha256"]:
            raise ValueError("checksum mismatch")
        config = ConfigSet.from_lists(json.loads(zlib.decompress(body)))
        if config.hash != header["hash"]:
            raise ValueError("config hash mismatch")
        return str(header["version"]), config, header.get("written_by") == __version__
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        log.warning("config cache %s is corrupt and was ignored: %s", path, exc)
        return None
