"""Principals: who is calling, and which jobs they may see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "user"]


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    role: Role = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def visible_owner(self) -> str | None:
        """The owner filter for reads: admins see every job."""
        return None if self.is_admin else self.id


# stdio serves the local user, who owns the machine and so everything on it.
LOCAL_USER = Principal("local", "admin")
