"""Shared fixtures. Tests that need the book call the ``book`` fixture.

The book comes from ``$D2LMINI_DATA`` (CI points it at ../shared/data) or the download cache.
Under ``CI=true`` a missing book fails loudly; elsewhere those tests skip and say why.
"""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


# Unit tests use tiny tensors and pytest-xdist runs workers side by side: extra intra-op
# threads would only fight over the cores (10x slower on a busy 2-core machine).
torch.set_num_threads(1)


def _book_problem():
    """None when the book can be read, else a sentence saying what is wrong."""
    import d2lmini as d2l

    try:
        d2l.read_time_machine()
    except (OSError, ValueError) as err:
        return f"The Time Machine is not available ({err})"
    return None


@pytest.fixture(scope="session")
def book():
    """Skip (or, under CI, fail) tests that need The Time Machine when it cannot be read."""
    problem = _book_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"{problem}. CI must set D2LMINI_DATA to the folder holding timemachine.txt.")
    if problem:
        pytest.skip(f"{problem}. Set D2LMINI_DATA to a folder holding timemachine.txt.")
    return ROOT


# --- a real PostgreSQL server for the gradebook tests ---------------------------------------

class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl from Debian's ``postgresql``) in a
    temporary folder, listening on a free loopback port; as root it runs as ``postgres``
    (the server refuses root). ``url(name)`` creates a database and returns its URL."""

    def __init__(self, folder: Path):
        import glob
        import pwd
        import shutil
        import socket

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = bins[-1] if bins else shutil.which("initdb")
        if initdb is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = Path(initdb).parent
        self.data, self.run = folder / "data", folder / "run"
        self.run.mkdir(parents=True)
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.prefix = []
        if os.getuid() == 0:
            self.user, self.prefix = "postgres", ["runuser", "-u", "postgres", "--"]
            shutil.chown(folder, "postgres")
            shutil.chown(self.run, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._call("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user,
                   "--no-sync", "-E", "UTF8")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.run} "
                   "-c fsync=off -c max_connections=50")
        self._call("pg_ctl", "-D", str(self.data), "-l", str(folder / "server.log"), "-w",
                   "-o", options, "start")

    def _call(self, tool: str, *args: str) -> None:
        import subprocess

        done = subprocess.run([*self.prefix, str(self.bin / tool), *args], capture_output=True,
                              text=True, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def url(self, name: str) -> str:
        """A new, empty database ``name``: its ``postgresql://`` URL."""
        self._call("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._call("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server (one per test process). Without PostgreSQL the tests
    skip, except under ``CI=true``, where .ci/run installs it and its absence fails."""
    import shutil
    import tempfile

    # not under pytest's basetemp: that is private to root, and the server runs as postgres
    folder = Path(tempfile.mkdtemp(prefix="autograder-postgres-"))
    try:
        server = PostgresServer(folder)
    except (FileNotFoundError, RuntimeError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is needed under CI: {err}")
        pytest.skip(f"no PostgreSQL server: {err}")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def built_once(tmp_path_factory, name: str, build) -> dict:
    """``build(folder) -> dict`` run once per test session and shared by every xdist worker
    (under a file lock, in the session's common temp folder); its dict plus ``base``."""
    import fcntl
    import json
    import shutil

    base_temp = tmp_path_factory.getbasetemp()
    under_xdist = "PYTEST_XDIST_WORKER" in os.environ  # then every worker shares the parent
    shared = (base_temp.parent if under_xdist else base_temp) / name
    with open(str(shared) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done.json").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            (shared / "done.json").write_text(json.dumps(build(shared)))
    return json.loads((shared / "done.json").read_text()) | {"base": shared}
