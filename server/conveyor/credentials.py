"""Per-run credentials: secrets a caller hands one run of a tool (``credentials`` on a submit or
a call), which the tool reads from ``ctx.credentials``.

A direct run keeps them in memory only. A job must keep them until a worker runs it, perhaps in
another process after a restart: the store holds them sealed (Fernet: AES-128-CBC and
HMAC-SHA256) with a server key, bound to their job, and erases them when the job ends (a trigger
in each store's schema). They are never part of a job view, a log line or a webhook. A job's
secret arguments (``secret_arguments.py``) are sealed with them, in the same token.

The key comes from the ``credentials_key`` setting. Without it, a SQLite database gets one made
on first use, kept beside the database file (owner-only), with a warning: whoever can read both
files can read the credentials of jobs still waiting. PostgreSQL serves many machines, and a key
kept in the database would protect nothing, so there the setting is required.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ExecutionError, InvalidArguments

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

logger = logging.getLogger("conveyor.credentials")

KEY_FILE_SUFFIX = ".credentials-key"
REDACTED = "[redacted]"


class CredentialVault:
    """Seals a job's credentials for the store, and opens them for its run."""

    def __init__(self, key: str | None = None, *, key_file: Path | None = None) -> None:
        self._key = key.encode() if key is not None else None
        self._fernet: Fernet | None = None
        self._key_file = key_file  # where a key is made on first use, when none was given
        self._lock = threading.Lock()

    @classmethod
    def for_database(cls, db: str, key: str | None, *, is_postgres: bool) -> CredentialVault:
        if key is not None or is_postgres:
            return cls(key)
        return cls(key_file=Path(db).with_name(Path(db).name + KEY_FILE_SUFFIX))

    def seal(
        self, job_id: str, credentials: Mapping[str, str], secret_arguments: Mapping[str, Any] | None = None
    ) -> str:
        """The credentials (and the job's secret arguments, ``secret_arguments.py``) as the store
        keeps them: a token only this server's key opens, and only for this job."""
        sealed: dict[str, Any] = {"job_id": job_id, "credentials": dict(credentials)}
        if secret_arguments:
            sealed["arguments"] = dict(secret_arguments)
        try:
            cipher = self._cipher(making=True)
        except InvalidArguments:
            if credentials or not secret_arguments:
                raise
            raise InvalidArguments(
                "This server cannot keep a job's secret arguments: it has no credentials_key",
                argument=sorted(secret_arguments)[0],
                suggested_fix="Call the tool directly (a direct call stores nothing), or ask the "
                "operator to set credentials_key (the same on every server and worker).",
            ) from None
        return cipher.encrypt(json.dumps(sealed).encode()).decode()

    def open(self, job_id: str, sealed: str) -> dict[str, str]:
        return self.unseal(job_id, sealed)[0]

    def unseal(self, job_id: str, sealed: str) -> tuple[dict[str, str], dict[str, Any]]:
        """A job's credentials and its secret arguments, for its run."""
        failed = ExecutionError(
            "This job's credentials cannot be read with this server's credentials_key",
            suggested_fix="Give every server and worker the same credentials_key, then submit the job again.",
        )
        from cryptography.fernet import InvalidToken

        try:
            opened = json.loads(self._cipher(making=False).decrypt(sealed.encode()))
        except (InvalidToken, ValueError, InvalidArguments):  # no key, another key, a damaged token
            raise failed from None
        if opened.get("job_id") != job_id:  # a token copied onto another job's row
            raise failed
        credentials: dict[str, str] = opened["credentials"]
        return credentials, opened.get("arguments", {})

    def _cipher(self, *, making: bool) -> Fernet:
        # Imported on first use: a server that never sees credentials does not pay for it.
        from cryptography.fernet import Fernet

        if self._fernet is None:
            with self._lock:
                if self._fernet is None and self._key is None and self._key_file is not None:
                    self._key = _read_or_make_key(self._key_file, making=making)
                if self._fernet is None and self._key is not None:
                    self._fernet = Fernet(self._key)
        if self._fernet is None:
            raise InvalidArguments(
                "This server takes no credentials: it has no credentials_key",
                argument="credentials",
                suggested_fix="Leave credentials out, or ask the operator to set credentials_key "
                "(the same on every server and worker).",
            )
        return self._fernet


def redact(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (JSON) with every secret's occurrence in its strings replaced: what a tool hands
    back may echo the credentials it was called with (an API that repeats a header, say)."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(key, secrets): redact(item, secrets) for key, item in value.items()}
    return value


def _read_or_make_key(path: Path, *, making: bool) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        if not making:
            raise InvalidArguments(f"No credentials key at {path}", argument="credentials") from None
    # Written whole beside it, then linked into place: of two processes making one at once, one
    # link wins, and the other reads that key, never a half-written file.
    draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(base64.urlsafe_b64encode(os.urandom(32)) + b"\n")  # a Fernet key
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(draft, path)
    except FileExistsError:
        return path.read_bytes().strip()
    finally:
        draft.unlink()
    logger.warning(
        "made a key for per-run credentials; keep it private and back it up with the database "
        "(jobs queued with credentials cannot run without it), or set credentials_key",
        extra={"action": "credentials.key_made", "path": str(path)},
    )
    return path.read_bytes().strip()
