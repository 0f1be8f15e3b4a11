"""A real `redis-server` for tests: its own port and directory, no persistence, killable.

`RedisServer(tmp).start()` runs one and waits until it answers PING; `kill()` makes it vanish
the way a crashed Redis does, and `start()` again brings it back on the same port (empty).
`redis_or_skip()` skips the test, saying why, when the binary is not installed (`.ci/run`
installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.procs import free_port, wait_for

BINARY = "redis-server"


def redis_or_skip() -> str:
    found = shutil.which(BINARY) or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if found is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server; "
                    ".ci/run installs it)")
    return found


class RedisServer:
    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.binary = redis_or_skip()
        self.dir = tmp / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--protected-mode", "no",
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._pong, 10, f"redis-server on port {self.port}")
        return self

    def _pong(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
        with self.client() as c:
            return bool(c.ping())

    def client(self) -> redis.Redis:
        """A plain (blocking) client, for the test to look at what the data planes wrote."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def values(self, pattern: str = "tidegate:rla:*") -> dict[str, int]:
        """Every rate-limit counter in this Redis: key → count."""
        with self.client() as c:
            return {k.decode(): int(c.get(k) or 0) for k in c.scan_iter(pattern)}

    def kill(self) -> None:
        """Gone at once, as a crashed Redis (no goodbye to its clients)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
