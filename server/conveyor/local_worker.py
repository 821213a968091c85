"""The local worker: one detached ``conveyor worker --local`` per database, for stdio servers.

A stdio client may end its server at any moment (after each call, or when the user quits), so
``conveyor serve`` over stdio does not run jobs itself: it makes sure a local worker runs for its
database, starting one in a session of its own (a client that kills the server's process tree
does not reach it). The worker holds an exclusive lock on ``<db>.worker.lock`` for its whole
life, which is how a second start finds the first; it logs to ``<db>.worker.log`` and exits by
itself once nothing has been queued or running for ``worker_idle_exit_seconds``. (For a
PostgreSQL URL, both files are in the user's state directory, named by a hash of the URL.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from conveyor.settings import Settings, is_postgres_url

if sys.platform == "win32":  # pragma: no cover - Windows only
    import msvcrt
else:
    import fcntl

logger = logging.getLogger("conveyor.local_worker")

INHERITED_SETTINGS_ENV = "CONVEYOR_INHERITED_SETTINGS"
LOG_ROTATE_BYTES = 5_000_000
ACQUIRE_PATIENCE_S = 1.0  # a server may be testing the lock at the very moment a worker takes it


def database(db: str) -> str:
    """The database as the local worker's files name it: a SQLite file's absolute path, or the URL."""
    return db if is_postgres_url(db) else os.path.abspath(db)


def _beside(db: str) -> str:
    """Where the local worker's files go: beside a SQLite file; for a PostgreSQL URL (no file of
    its own), in the user's state directory, under a name of the URL's."""
    if not is_postgres_url(db):
        return os.path.abspath(db)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "conveyor" / f"postgres-{hashlib.sha256(db.encode()).hexdigest()[:16]}")


def lock_path(db: str) -> Path:
    return Path(f"{_beside(db)}.worker.lock")


def log_path(db: str) -> Path:
    return Path(f"{_beside(db)}.worker.log")


@dataclass(frozen=True)
class WorkerInfo:
    """What the lock file says about the local worker; ``running`` if its lock is held."""

    db: str
    running: bool
    pid: int | None = None
    started_at: int | None = None
    log: str | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "running": self.running,
            "pid": self.pid,
            "started_at": self.started_at,
            "log": self.log,
        }


class WorkerLock:
    """The exclusive lock a local worker holds for its life (flock, released by the OS if it dies)."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.path = lock_path(db)
        self._file: IO[str] | None = None

    def acquire(self, *, patience_s: float = ACQUIRE_PATIENCE_S) -> bool:
        """Take the lock, trying for ``patience_s``; False if another worker holds it."""
        deadline = time.monotonic() + patience_s
        while True:
            if self._try_acquire():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")  # noqa: SIM115 - held open for the worker's life
        if not _lock(file):
            file.close()
            return False
        file.seek(0)
        file.truncate()
        info = {"pid": os.getpid(), "started_at": int(time.time()), "log": str(log_path(self.db))}
        file.write(json.dumps(info))
        file.flush()
        self._file = file
        return True

    def release(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            _unlock(file)
            file.close()

    @property
    def held(self) -> bool:
        return self._file is not None


def status(db: str) -> WorkerInfo:
    """Whether a local worker runs for ``db``, and what its lock file says about it."""
    path = lock_path(db)
    try:
        with open(path) as file:
            running = not _probe(file)
            info = json.loads(file.read() or "{}")
    except (FileNotFoundError, json.JSONDecodeError):
        return WorkerInfo(db=database(db), running=False)
    return WorkerInfo(
        db=database(db),
        running=running,
        pid=info.get("pid"),
        started_at=info.get("started_at"),
        log=info.get("log"),
    )


class LocalWorkerLauncher:
    """Starts the local worker for a server's database when none runs (at start, and after each
    submit: an idle worker may have exited while the server sat waiting for its client)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"db": database(settings.db)})
        self._child: subprocess.Popen[bytes] | None = None

    def ensure(self) -> None:
        if self._child is not None:
            if self._child.poll() is None:
                return  # still running, or still starting: it takes the lock in a moment
            self._child = None  # reaped: it exited (idle, or another worker held the lock)
        if status(self.settings.db).running:
            return
        self._child = spawn(self.settings)
        logger.info(
            "local worker started",
            extra={
                "action": "local_worker.started",
                "pid": self._child.pid,
                "log": str(log_path(self.settings.db)),
            },
        )


def spawn(settings: Settings) -> subprocess.Popen[bytes]:
    """Start ``conveyor worker --local`` detached, with these settings, logging beside the database."""
    log = log_path(settings.db)
    log.parent.mkdir(parents=True, exist_ok=True)
    _rotate(log)
    env = {**os.environ, INHERITED_SETTINGS_ENV: settings.with_secrets()}
    detached: dict[str, Any] = (
        {"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        if sys.platform == "win32"
        else {"start_new_session": True}
    )
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--local"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
            close_fds=True,
            **detached,
        )


def _rotate(log: Path) -> None:
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_name(log.name + ".1"))


if sys.platform == "win32":  # pragma: no cover - Windows only

    def _lock(file: IO[str]) -> bool:
        try:
            file.seek(0)
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(file: IO[str]) -> None:
        file.seek(0)
        with contextlib.suppress(OSError):
            msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)

    def _probe(file: IO[str]) -> bool:
        if not _lock(file):
            return False
        _unlock(file)
        return True

else:

    def _lock(file: IO[str]) -> bool:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(file: IO[str]) -> None:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)

    def _probe(file: IO[str]) -> bool:
        """True if nobody holds the lock (a shared lock, taken and let go at once)."""
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
        return True
