"""The SQLite store's database process: ``python -m conveyor.jobs.sqlite_child``.

It reads calls from its stdin, each a frame (``HEADER``: the payload's size and the call's id,
then the pickled function), runs ``function(connection)`` and writes back a frame with the
pickled ``(result, error)``. The first call opens the connection. It exits when its stdin ends;
it ignores SIGINT and SIGTERM (see ``sqlite_process.py``). It imports no more than it needs
(no asyncio): it is on the path of a server's start.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import signal
import struct
import sys
from typing import Any, BinaryIO

from conveyor.jobs.sqlite_batches import MAX_BATCH, Batch, run_together

HEADER = struct.Struct("<IQ")  # the payload's size, the call's id


class _Child:
    """The database process's side: the connection, and what it answers."""

    def __init__(self, answers: BinaryIO) -> None:
        self._answers = answers
        self._conn: Any = None
        self._failure: BaseException | None = None

    def serve(self, calls: int) -> None:
        """Answer the calls read from the file descriptor ``calls`` until it ends. Every read
        takes all that has arrived, so batches of the group committer that queued up while the
        last one ran are run as one (one transaction, one commit)."""
        buffer = bytearray()
        while chunk := os.read(calls, 1 << 20):
            buffer += chunk
            arrived: list[tuple[int, Any]] = []
            while len(buffer) >= HEADER.size:
                size, call_id = HEADER.unpack_from(buffer)
                end = HEADER.size + size
                if len(buffer) < end:
                    break
                arrived.append((call_id, self._load(buffer[HEADER.size : end])))
                del buffer[:end]
            at = 0
            while at < len(arrived):
                batches = _leading_batches(arrived, at)
                if len(batches) > 1 and self._conn is not None:
                    answers = run_together(self._conn, [batch for _, batch in batches])
                    for (call_id, _), outcomes in zip(batches, answers, strict=True):
                        self._answer(call_id, outcomes, None)
                    at += len(batches)
                else:
                    self._call(*arrived[at])
                    at += 1
            self._answers.flush()
        if self._conn is not None:
            self._conn.close()

    @staticmethod
    def _load(payload: bytes | bytearray) -> Any:
        try:
            return pickle.loads(payload)
        except Exception as exc:  # answered as the call's error
            return exc

    def _call(self, call_id: int, function: Any) -> None:
        try:
            if isinstance(function, Exception):
                raise function  # it did not unpickle
            if self._conn is not None:
                result = function(self._conn)
            elif self._failure is not None:
                raise self._failure  # every call learns why the connection did not open
            else:  # the first call opens the connection
                try:
                    self._conn, result = function(None), None
                except BaseException as exc:
                    self._failure = exc
                    raise
        except BaseException as exc:
            self._answer(call_id, None, exc)
        else:
            self._answer(call_id, result, None)

    def _answer(self, call_id: int, result: Any, error: BaseException | None) -> None:
        try:
            payload = pickle.dumps((result, error), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an answer that does not pickle is a bug: say which, not hang the caller
            failure = RuntimeError(
                f"the database process could not send its answer back: {exc!r} ({error!r})"
            )
            payload = pickle.dumps((None, failure), pickle.HIGHEST_PROTOCOL)
        self._answers.write(HEADER.pack(len(payload), call_id) + payload)


def _leading_batches(arrived: list[tuple[int, Any]], start: int) -> list[tuple[int, Any]]:
    """The group committer's batches in ``arrived`` from ``start`` on, as many as make one batch."""
    leading: list[tuple[int, Any]] = []
    operations = 0
    for call_id, function in itertools.islice(arrived, start, None):
        if not isinstance(function, Batch) or (leading and operations + len(function) > MAX_BATCH):
            break
        leading.append((call_id, function))
        operations += len(function)
    return leading


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The answers go out on a copy of stdout; stdout itself goes to stderr, so that nothing
    # printed by accident can break a frame.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Its own records go nowhere: what goes wrong comes back to the server as an error, to log there.
    logging.getLogger("conveyor").addHandler(logging.NullHandler())
    logging.getLogger("conveyor").propagate = False
    _Child(answers).serve(sys.stdin.fileno())


if __name__ == "__main__":
    main()
