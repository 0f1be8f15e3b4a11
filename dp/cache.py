"""The data plane's on-disk config cache: what a DP restarted without its CP serves.

Two files. The snapshot: a header line (JSON: format, version, hash, SHA-256 of the body, who
wrote it) and a zlib-compressed JSON body, written to a temporary file, fsynced and renamed over
the old one, so a crash leaves the old snapshot or the new one. The journal: one record per delta
applied since (length, SHA-256, JSON), appended and fsynced, so the cost of making a delta
durable is the size of the delta, not of the config. Loading replays the journal onto the
snapshot, checking each record's checksum, its starting version and the hash after it; a torn
or damaged record ends the replay there. Every `COMPACT_AFTER` records the snapshot is rewritten
and the journal dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import __version__
from shared.config_set import ConfigSet

log = logging.getLogger("tidegate.dp")

FORMAT = 1
COMPACT_AFTER = 200
_RECORD_HEAD = struct.Struct(">I32s")  # payload length, SHA-256 of the payload


@dataclass(frozen=True)
class Cached:
    version: str
    config: ConfigSet
    trusted: bool  # written by this tidegate version after validating: no need to re-validate


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ConfigCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = path.with_name(path.name + ".journal")
        self.records = 0

    @property
    def needs_compaction(self) -> bool:
        return self.records >= COMPACT_AFTER

    def save(self, version: str, config: ConfigSet) -> None:
        """Write a full snapshot and drop the journal it makes redundant."""
        body = zlib.compress(json.dumps(config.to_lists(), separators=(",", ":")).encode(), 1)
        header = {"format": FORMAT, "version": version, "hash": config.hash,
                  "sha256": hashlib.sha256(body).hexdigest(), "written_by": __version__}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n" + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        # A crash here leaves a journal that starts at an older version: replay skips it.
        self.journal.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        self.records = 0

    def append(self, from_version: str, to_version: str, config_hash: str,
               upserts: list[tuple[str, str, bytes]], removals: list[tuple[str, str]]) -> None:
        """Make one applied delta durable (needs a snapshot to build on)."""
        payload = json.dumps({
            "from": from_version, "to": to_version, "hash": config_hash,
            "upserts": [[t, i, raw.decode()] for t, i, raw in upserts],
            "removals": [[t, i] for t, i in removals],
        }, separators=(",", ":")).encode()
        record = _RECORD_HEAD.pack(len(payload), hashlib.sha256(payload).digest()) + payload
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, record)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records += 1

    def load(self) -> Cached | None:
        """The cached config, or None when there is none or the snapshot is damaged."""
        snapshot = self._load_snapshot()
        if snapshot is None:
            return None
        version, config, trusted = snapshot
        try:
            version, self.records = self._replay(version, config)
        except ValueError as exc:
            log.warning("config cache journal %s is inconsistent and the cache was ignored: %s",
                        self.journal, exc)
            return None
        return Cached(version, config, trusted)

    def _load_snapshot(self) -> tuple[str, ConfigSet, bool] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("config cache %s unreadable, ignored: %s", self.path, exc)
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
            log.warning("config cache %s is corrupt and was ignored: %s", self.path, exc)
            return None

    def _replay(self, version: str, config: ConfigSet) -> tuple[str, int]:
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            return version, 0
        applied, offset = 0, 0
        while offset < len(data):
            record = _read_record(data, offset)
            if record is None:
                log.warning("config cache journal damaged after %d records; using the config "
                            "as of %s", applied, version)
                break
            payload, offset = record
            if payload["from"] != version:
                break  # from before the snapshot (a compaction was interrupted)
            for entity_type, _, raw in payload["upserts"]:
                config.upsert(entity_type, json.loads(raw))
            for entity_type, entity_id in payload["removals"]:
                config.remove(entity_type, entity_id)
            if config.hash != payload["hash"]:
                raise ValueError("journal replay produced another config hash")
            version = payload["to"]
            applied += 1
        return version, applied


def _read_record(data: bytes, offset: int) -> tuple[dict[str, Any], int] | None:
    end = offset + _RECORD_HEAD.size
    if end > len(data):
        return None
    length, digest = _RECORD_HEAD.unpack_from(data, offset)
    payload = data[end:end + length]
    if len(payload) != length or hashlib.sha256(payload).digest() != digest:
        return None
    try:
        return json.loads(payload), end + length
    except ValueError:
        return None
