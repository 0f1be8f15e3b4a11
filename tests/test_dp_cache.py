"""The data plane's cache on real files: snapshot + journal, damage, interrupted compaction."""

from __future__ import annotations

import json

from dp import cache as cache_module
from dp.cache import ConfigCache
from shared.config_set import ConfigSet
from shared.entities import ENTITIES


def service(name: str) -> dict:
    return ENTITIES["services"].process({"name": name, "host": "h.test"})


def apply(config: ConfigSet, cache: ConfigCache, version: int, entity: dict) -> None:
    config.upsert("services", entity)
    cache.append(f"e:{version - 1}", f"e:{version}", config.hash,
                 [("services", entity["id"], json.dumps(entity).encode())], [])


def test_snapshot_plus_journal_round_trip(tmp_path):
    config = ConfigSet.from_lists({"services": [service("a")]})
    cache = ConfigCache(tmp_path / "config.cache")
    cache.save("e:1", config)
    b = service("b")
    apply(config, cache, 2, b)
    config.remove("services", b["id"])
    cache.append("e:2", "e:3", config.hash, [], [("services", b["id"])])
    apply(config, cache, 4, service("c"))

    loaded = ConfigCache(tmp_path / "config.cache").load()
    assert loaded is not None
    assert loaded.version == "e:4" and loaded.config.hash == config.hash
    assert sorted(s["name"] for s in loaded.config.entities["services"].values()) == ["a", "c"]
    assert loaded.trusted


def test_torn_journal_record_keeps_what_came_before(tmp_path):
    config = ConfigSet()
    cache = ConfigCache(tmp_path / "config.cache")
    cache.save("e:1", config)
    apply(config, cache, 2, service("a"))
    good_hash = config.hash
    apply(config, cache, 3, service("b"))
    journal = tmp_path / "config.cache.journal"
    journal.write_bytes(journal.read_bytes()[:-5])  # a crash in the middle of the last write

    loaded = ConfigCache(tmp_path / "config.cache").load()
    assert loaded is not None and loaded.version == "e:2" and loaded.config.hash == good_hash


def test_damaged_snapshot_is_ignored(tmp_path, caplog):
    cache = ConfigCache(tmp_path / "config.cache")
    cache.save("e:1", ConfigSet.from_lists({"services": [service("a")]}))
    raw = bytearray((tmp_path / "config.cache").read_bytes())
    raw[-3] ^= 0x55
    (tmp_path / "config.cache").write_bytes(bytes(raw))
    assert ConfigCache(tmp_path / "config.cache").load() is None
    assert "corrupt" in caplog.text


def test_compaction_and_an_interrupted_one(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "COMPACT_AFTER", 3)
    config = ConfigSet()
    cache = ConfigCache(tmp_path / "config.cache")
    cache.save("e:1", config)
    for v in range(2, 5):
        apply(config, cache, v, service(f"s{v}"))
    assert cache.needs_compaction
    old_journal = (tmp_path / "config.cache.journal").read_bytes()
    cache.save("e:4", config)
    assert not (tmp_path / "config.cache.journal").exists() and not cache.needs_compaction

    # A crash between the snapshot's rename and the journal's removal leaves both behind.
    (tmp_path / "config.cache.journal").write_bytes(old_journal)
    loaded = ConfigCache(tmp_path / "config.cache").load()
    assert loaded is not None and loaded.version == "e:4" and loaded.config.hash == config.hash
