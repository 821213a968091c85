"""Each toolkit's own settings, from a ``[toolkit_settings.<toolkit>]`` table, and who may call it.

A toolkit declares its settings as a pydantic model (``Toolkit("shell", settings=ShellSettings)``);
the table is checked against that model once, when the tools are loaded, so a bad value stops the
start with one line, as any other setting does. Its tools read the result as ``ctx.settings``.

Every table, whatever its toolkit (upstream and OpenAPI ones too), may also say
``allowed_roles = ["admin"]``: only keys of those roles may call the toolkit's tools over HTTP,
directly or as jobs. The toolkit gives the default (``Toolkit(..., allowed_roles=...)``; none
means every role). The executor enforces it on the one path every run and submit takes; the
local stdio user and the runs of jobs already admitted are trusted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from conveyor.auth import LOCAL_USER, ROLES, Principal
from conveyor.errors import ConfigError, Forbidden

if TYPE_CHECKING:
    from conveyor.toolkit import Toolkit

ALLOWED_ROLES = "allowed_roles"


@dataclass(frozen=True, slots=True)
class ToolkitConfig:
    """A toolkit's settings, validated, and the roles that may call its tools (None: every role)."""

    settings: BaseModel | None = None
    allowed_roles: frozenset[str] | None = None

    def admit(self, caller: Principal | None, *, tool: str, toolkit: str) -> None:
        """Raise FORBIDDEN unless ``caller`` may run the tool. None is a trusted caller: a job's
        run (its submit was admitted) or a run the process makes for itself."""
        if caller is None or caller == LOCAL_USER or self.allowed_roles is None:
            return
        if caller.role not in self.allowed_roles:
            roles = " or ".join(sorted(self.allowed_roles)) or "no role"
            raise Forbidden(
                f"{tool} may be called only with a key of role {roles}",
                tool=tool,
                suggested_fix=f"Use a key of role {roles}, or ask the operator to add role "
                f"{caller.role!r} to allowed_roles in [toolkit_settings.{toolkit}].",
            )


def configure(toolkit: Toolkit, table: Mapping[str, Any] | None) -> ToolkitConfig:
    """Check one toolkit's table against its settings model; ``ConfigError`` says what is wrong."""
    values = dict(table or {})
    where = f"toolkit_settings.{toolkit.name}"
    roles = _roles(values.pop(ALLOWED_ROLES, toolkit.allowed_roles), where)
    model = toolkit.settings_model
    if model is None:
        if values:
            raise ConfigError(
                f"invalid settings: {where}: toolkit {toolkit.name!r} takes no settings but "
                f"{ALLOWED_ROLES} (got {', '.join(sorted(values))})"
            )
        return ToolkitConfig(None, roles)
    try:
        return ToolkitConfig(model.model_validate(values), roles)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join([where, *(str(p) for p in error['loc'])])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


def configure_all(
    toolkits: Mapping[str, Toolkit], tables: Mapping[str, Mapping[str, Any]]
) -> dict[str, ToolkitConfig]:
    """Every loaded toolkit's config; a table naming no loaded toolkit is a mistake worth a stop."""
    unknown = sorted(set(tables) - set(toolkits))
    if unknown:
        loaded = ", ".join(sorted(toolkits)) or "none"
        raise ConfigError(
            f"invalid settings: toolkit_settings.{unknown[0]}: no toolkit of that name is loaded "
            f"(loaded: {loaded}); add it to toolkits, or remove the table"
        )
    return {name: configure(toolkit, tables.get(name)) for name, toolkit in toolkits.items()}


def _roles(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Collection):
        raise ConfigError(f"invalid settings: {where}.{ALLOWED_ROLES}: must be a list of roles")
    wrong = [role for role in value if role not in ROLES]
    if wrong:
        raise ConfigError(
            f"invalid settings: {where}.{ALLOWED_ROLES}: {wrong[0]!r} is not a role ({', '.join(ROLES)})"
        )
    return frozenset(value)
