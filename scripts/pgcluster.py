#!/usr/bin/env python3
"""A throwaway PostgreSQL cluster for the tests and the demo.

    scripts/pgcluster.py run -- COMMAND...   start a cluster, run COMMAND with its environment,
                                             stop it (a cluster already named by MOLT_PG_DSN
                                             is used as it is: `make test` starts one for all)
    scripts/pgcluster.py start               start one; print `export` lines for a shell
    scripts/pgcluster.py stop [DIR]          stop the one MOLT_PG_DIR (or DIR) names, remove it

The cluster lives in a temporary directory (never in the checkout: as root the server runs as
the `postgres` account, which cannot enter a checkout under a 0700 home) and listens on a unix
socket in that directory only, never on TCP. Debian's server is installed first when missing
(`scripts/ensure_postgres.sh`).

Roles: `postgres`, the bootstrap superuser; `molt`, which owns the database `molt` (and may
create the test databases Django's test runner makes) and reads `pg_stat_activity` of every
backend; `molt_reader`, a password (SCRAM) login with a random password, for tests of refused
logins. Trust authentication is safe here because only the socket's owner can reach it.

The environment it hands to commands:
    MOLT_PG_DIR              the cluster's directory
    MOLT_PG_DSN              libpq key=value DSN of `molt` on database `molt`
    MOLT_PG_READER_USER      `molt_reader`
    MOLT_PG_READER_PASSWORD  its password
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
READER = "molt_reader"
# Settings for a cluster whose data is thrown away: durability costs time and buys nothing.
SERVER_OPTIONS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
}


@dataclass(frozen=True)
class PgCluster:
    """A running cluster: its directory and what a client needs to reach it."""

    directory: Path
    reader_password: str

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def dsn(self, user: str = "molt", dbname: str = "molt") -> str:
        return f"host={self.socket_dir} port=5432 dbname={dbname} user={user}"

    def environment(self) -> dict[str, str]:
        return {
            "MOLT_PG_DIR": str(self.directory),
            "MOLT_PG_DSN": self.dsn(),
            "MOLT_PG_READER_USER": READER,
            "MOLT_PG_READER_PASSWORD": self.reader_password,
        }

    @classmethod
    def start(cls) -> PgCluster:
        bindir = _server_bindir()
        directory = Path(tempfile.mkdtemp(prefix="molt-pg-"))
        cluster = cls(directory, secrets.token_urlsafe(18))
        try:
            cluster.socket_dir.mkdir()
            if os.geteuid() == 0:
                shutil.chown(directory, "postgres", "postgres")
                shutil.chown(cluster.socket_dir, "postgres", "postgres")
            _as_server(
                [
                    str(bindir / "initdb"),
                    "--pgdata", str(cluster.data_dir),
                    "--username", "postgres",
                    "--auth", "trust",
                    "--encoding", "UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                cwd=directory,
            )
            # SCRAM for the reader role only; every other local login is trusted (the socket
            # is in a directory only its owner can enter).
            hba = f"local all {READER} scram-sha-256\nlocal all all trust\n"
            _write_as_server(cluster.data_dir / "pg_hba.conf", hba)
            options = " ".join(f"-c {key}={value}" for key, value in SERVER_OPTIONS.items())
            options += f" -c unix_socket_directories='{cluster.socket_dir}'"
            _as_server(
                [
                    str(bindir / "pg_ctl"),
                    "--pgdata", str(cluster.data_dir),
                    "--log", str(directory / "server.log"),
                    "--options", options,
                    "--wait", "--timeout", "60",
                    "start",
                ],
                cwd=directory,
            )
            cluster._create_roles(bindir)
            saved = os.open(directory / "cluster.json", os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(saved, "w") as file:
                json.dump({"reader_password": cluster.reader_password}, file)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @classmethod
    def at(cls, directory: Path) -> PgCluster:
        saved = json.loads((directory / "cluster.json").read_text())
        return cls(directory, saved["reader_password"])

    def _create_roles(self, bindir: Path) -> None:
        password = self.reader_password.replace("'", "''")
        script = f"""
            CREATE ROLE molt LOGIN CREATEDB;
            GRANT pg_read_all_stats TO molt;
            CREATE DATABASE molt OWNER molt;
            CREATE ROLE {READER} LOGIN PASSWORD '{password}';
        """
        subprocess.run(
            [
                str(bindir / "psql"),
                "--no-psqlrc", "--quiet",
                "--set", "ON_ERROR_STOP=1",
                "--dbname", self.dsn(user="postgres", dbname="postgres"),
            ],
            input=script,
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Stops the server (if it runs) and removes the directory."""
        if (self.data_dir / "postmaster.pid").exists():
            _as_server(
                [
                    str(_server_bindir() / "pg_ctl"),
                    "--pgdata", str(self.data_dir),
                    "--mode", "fast",
                    "--wait",
                    "stop",
                ],
                cwd=self.directory,
                check=False,
            )
        shutil.rmtree(self.directory, ignore_errors=True)


def _server_bindir() -> Path:
    """The newest installed server's bin directory, installing Debian's server when none is."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if not found:
        subprocess.run([str(REPO / "scripts" / "ensure_postgres.sh")], check=True)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if not found:
        sys.exit("pgcluster: no PostgreSQL server found under /usr/lib/postgresql")
    return Path(found[-1]).parent


def _version_key(initdb: str) -> int:
    version = Path(initdb).parent.parent.name
    return int(version) if version.isdigit() else 0


def _as_server(command: list[str], cwd: Path, check: bool = True) -> None:
    """Runs a server program as the account that owns the cluster (postgres, when root)."""
    user = "postgres" if os.geteuid() == 0 else None
    subprocess.run(
        command,
        cwd=cwd,
        check=check,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        stdout=subprocess.DEVNULL,
    )


def _write_as_server(path: Path, text: str) -> None:
    path.write_text(text)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _run(command: list[str]) -> int:
    if not command:
        sys.exit("pgcluster: run needs a command after --")
    if os.environ.get("MOLT_PG_DSN"):
        return subprocess.call(command)
    cluster = PgCluster.start()

    def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_on_signal)
    try:
        child = subprocess.Popen(command, env={**os.environ, **cluster.environment()})
        try:
            return child.wait()
        except BaseException:
            child.terminate()
            child.wait()
            raise
    finally:
        cluster.stop()


def main(argv: list[str]) -> int:
    verb = argv[0] if argv else ""
    if verb == "run":
        rest = argv[1:]
        return _run(rest[1:] if rest[:1] == ["--"] else rest)
    if verb == "start":
        cluster = PgCluster.start()
        for key, value in cluster.environment().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if verb == "stop":
        named = argv[1] if len(argv) > 1 else os.environ.get("MOLT_PG_DIR")
        if not named:
            sys.exit("pgcluster: stop needs the cluster's directory (or MOLT_PG_DIR)")
        PgCluster.at(Path(named)).stop()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
