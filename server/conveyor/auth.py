"""Principals, API keys (stored hashed) and roles: who is calling, and which jobs they may see."""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal, Protocol

from conveyor.errors import Unauthorized
from conveyor.jobs.models import now_ms

Role = Literal["admin", "user"]
PlanName = Literal["free", "pro", "enterprise"]
ROLES: tuple[Role, ...] = ("admin", "user")
PLANS: tuple[PlanName, ...] = ("free", "pro", "enterprise")
KEY_PREFIX = "cvk_"
KEY_CACHE_MAX_AGE_S = 30.0
KEY_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    role: Role = "user"
    plan: PlanName | None = None  # None: no plan limits (the local stdio user)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def visible_owner(self) -> str | None:
        """The owner filter for reads: admins see every job."""
        return None if self.is_admin else self.id


# stdio serves the local user, who owns the machine and so everything on it.
LOCAL_USER = Principal("local", "admin")


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str | None
    role: Role
    plan: PlanName
    created_at: int
    revoked_at: int | None = None

    @property
    def principal(self) -> Principal:
        # Jobs belong to the key: another key, even of the same person, is another owner.
        return Principal(self.key_id, self.role, self.plan)

    def to_public(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role,
            "plan": self.plan,
            "created_at": self.created_at // 1000,
            "revoked": self.revoked_at is not None,
        }


class KeyStore(Protocol):
    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None: ...

    async def find_api_key(self, key_hash: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> builtins.list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, *, now: int) -> bool: ...

    async def count_active_api_keys(self) -> int: ...

    def key_revocations(self) -> Hashable | None: ...


def hash_key(secret: str) -> str:
    # Keys are 256-bit random, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """API keys: made, listed, revoked, and checked on every request.

    A store that can tell cheaply whether any process revoked a key since (``key_revocations``:
    SQLite's marker file) lets look-ups be cached: the cache is dropped whenever the mark moves,
    so a revocation still holds from the next request on, in every process. A revocation whose
    process died between its commit and its mark is caught by the cache's age limit.
    """

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._cached: dict[str, ApiKey] = {}  # key hash -> key, valid while the mark stays
        self._mark: Hashable | None = None
        self._cached_at = 0.0

    async def create(self, *, role: Role, plan: PlanName, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is not stored and cannot be shown again."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            key_id=f"key_{secrets.token_hex(6)}", name=name, role=role, plan=plan, created_at=now_ms()
        )
        await self.store.insert_api_key(key, hash_key(secret))
        return key, secret

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthorized("Missing API key: send Authorization: Bearer <key>")
        key_hash = hash_key(secret)
        key = self._from_cache(key_hash)
        if key is None:
            key = await self.store.find_api_key(key_hash)
            if key is None:
                raise Unauthorized("Invalid or revoked API key")
            self._keep(key_hash, key)
        return key.principal

    def _from_cache(self, key_hash: str) -> ApiKey | None:
        mark = self.store.key_revocations()
        if mark is None:
            return None
        if mark != self._mark or time.monotonic() - self._cached_at > KEY_CACHE_MAX_AGE_S:
            self._cached.clear()
            self._mark, self._cached_at = mark, time.monotonic()
        return self._cached.get(key_hash)

    def _keep(self, key_hash: str, key: ApiKey) -> None:
        if self._mark is None:
            return  # no mark to tell a revocation by: not cached
        if len(self._cached) >= KEY_CACHE_SIZE:
            self._cached.clear()
        self._cached[key_hash] = key

    async def list(self) -> builtins.list[ApiKey]:
        return await self.store.list_api_keys()

    async def revoke(self, key_id: str) -> bool:
        return await self.store.revoke_api_key(key_id, now=now_ms())

    async def any_active(self) -> bool:
        return await self.store.count_active_api_keys() > 0
