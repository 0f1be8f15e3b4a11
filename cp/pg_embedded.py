"""A real PostgreSQL under the control plane's prefix, for running with no DSN configured.

Uses the server binaries on PATH (or Debian's /usr/lib/postgresql/*/bin), else the `pgserver`
wheel. The server listens only on a Unix socket inside its own 0700 data directory, so nothing
else on the machine can reach it. PostgreSQL refuses to run as root; when we are root the server
runs as `nobody`, which then owns the data directory.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger("tidegate.pg")

DB_NAME = "tidegate"
DB_USER = "tidegate"
PORT = 5432


class EmbeddedPostgresError(RuntimeError):
    pass


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL cluster in `data_dir`; `dsn` connects to its database."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).absolute()
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise EmbeddedPostgresError(
                "no PostgreSQL server found: install PostgreSQL (pg_ctl on PATH), "
                "`pip install tidegate[embedded-pg]`, or pass --pg-dsn"
            )
        self.bin = bin_dir
        self._run_as = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        if len(str(self.data_dir / f".s.PGSQL.{PORT}")) > 100:
            raise EmbeddedPostgresError(f"data directory path too long for a socket: {data_dir}")

    @property
    def dsn(self) -> str:
        return f"host={self.data_dir} port={PORT} user={DB_USER} dbname={DB_NAME}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True, text=True, check=check, cwd="/", **kwargs,
        )

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._run_as is not None:
            for parent in self.data_dir.parents:
                if not os.stat(parent).st_mode & 0o001:
                    raise EmbeddedPostgresError(
                        f"PostgreSQL runs as 'nobody' when tidegate runs as root, and 'nobody' "
                        f"cannot enter {parent}: choose a --prefix elsewhere or pass --pg-dsn")
            os.chown(self.data_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", DB_USER, "--auth=trust", "-E", "UTF8",
            "--no-instructions", check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}")

    def running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> str:
        """Initialise on first use, start unless already running, ensure the database exists."""
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.data_dir)
            self._init()
        if self.running():
            log.info("embedded PostgreSQL already running in %s", self.data_dir)
        else:
            options = f"-k {self.data_dir} -c listen_addresses='' -p {PORT}"
            result = self._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                "-l", str(self.data_dir / "postgres.log"), "-o", options, check=False,
            )
            if result.returncode != 0:
                tail = self._log_tail()
                raise EmbeddedPostgresError(f"PostgreSQL did not start: {result.stderr}{tail}")
            log.info("embedded PostgreSQL started (data directory %s)", self.data_dir)
        self._ensure_database()
        return self.dsn

    def _log_tail(self) -> str:
        path = self.data_dir / "postgres.log"
        try:
            return "\n" + "\n".join(path.read_text().splitlines()[-10:])
        except OSError:
            return ""

    def _ensure_database(self) -> None:
        result = self._run(
            "psql", "-h", str(self.data_dir), "-p", str(PORT), "-U", DB_USER, "-d", "postgres",
            "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'", check=False,
        )
        if result.stdout.strip() != "1":
            self._run("createdb", "-h", str(self.data_dir), "-p", str(PORT), "-U", DB_USER, DB_NAME)

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", check=False)
            log.info("embedded PostgreSQL stopped")
