"""The database file a store opened, watched: deleted or replaced under a running server, every
write would go to a file nobody opens again, so the store notices and refuses to acknowledge any."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from conveyor.errors import ConfigError

logger = logging.getLogger("conveyor.store")


class DatabaseFileLost(Exception):
    """The database file was deleted or replaced while this process had it open."""


class DatabaseFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fault: str | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) as opened; None: in memory
        self._traces: list[str] = []  # what was beside a missing file when the store opened

    def prepare(self) -> bool:
        """Make the file's directory; whether the file existed already."""
        if self.path == ":memory:":
            return True
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the directory of {self.path}: {exc.strerror or exc}") from None
        if os.path.exists(self.path):
            return True
        self._traces = [
            suffix for suffix in ("-wal", "-shm", ".worker.lock") if os.path.exists(self.path + suffix)
        ]
        return False

    def remember(self) -> None:
        if self.path != ":memory:":
            status = os.stat(self.path)
            self._identity = (status.st_dev, status.st_ino)

    def guard(self) -> Callable[[], None] | None:
        """What the database process runs before each write: raises ``DatabaseFileLost`` if the
        file is not the one opened any more (picklable: a few bytes with each batch)."""
        if self._identity is None:
            return None  # in memory, or not opened yet
        return partial(check_identity, self.path, self._identity, self.fault)

    def check(self) -> None:
        """Raise ``DatabaseFileLost`` if the file is not the one opened any more (before each write)."""
        if self.look() is not None:
            raise DatabaseFileLost(f"The database file {self.path} was {self.fault}; restart Conveyor")

    def look(self) -> str | None:
        """Look at the file again; the fault, once there is one (it stays: the store is done)."""
        if self.fault is not None or self._identity is None:
            return self.fault
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self._lost("deleted")
            return self.fault
        except OSError:
            return None  # unreadable for a moment (a network filesystem?): the writes will tell
        if (status.st_dev, status.st_ino) != self._identity:
            self._lost("replaced by another file")
        return self.fault

    def log_creation(self) -> None:
        # A new database next to the traces of an old one is most likely a deleted one: say so.
        level = logging.WARNING if self._traces else logging.INFO
        logger.log(level, "created a new, empty database", extra={"action": "store.created", "db": self.path})

    def _lost(self, how: str) -> None:
        self.fault = how
        logger.error(
            "the database file was %s: no write is acknowledged any more; restart Conveyor",
            how,
            extra={"action": "store.file_lost", "db": self.path},
        )


def check_identity(path: str, identity: tuple[int, int], fault: str | None) -> None:
    """``DatabaseFile.check`` for a file opened as ``identity`` ((device, inode)), in any process."""
    copy = DatabaseFile(path)
    copy._identity, copy.fault = identity, fault
    copy.check()
