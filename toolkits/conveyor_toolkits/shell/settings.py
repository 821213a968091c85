"""The ``shell`` toolkit's settings: ``[toolkit_settings.shell]`` in conveyor.toml."""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Enough for most programs to run as they would in a terminal, and nothing that carries a secret.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM")
COMMAND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class CommandRule(BaseModel):
    """What one allowed command may be given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    args: tuple[re.Pattern[str], ...] | None = Field(
        default=None,
        description="regular expressions; every argument must match one of them whole. Unset: any arguments",
    )
    max_args: int = Field(default=256, ge=0, le=10_000, description="how many arguments at most")


class ShellSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    commands: dict[str, CommandRule] = Field(
        default_factory=dict,
        description="the commands shell_run may run, by name (found on PATH) or absolute path; none by default",
    )
    roots: tuple[str, ...] = Field(
        default=(),
        description="absolute directories a run's cwd must resolve inside; the first is the default cwd",
    )
    inherit_env: tuple[str, ...] = Field(
        default=INHERITED_ENV, description="variables of the server's environment a command gets"
    )
    allowed_env: tuple[str, ...] = Field(
        default=("CI", "NO_COLOR", "FORCE_COLOR"), description="variables a caller may set with env"
    )
    credential_env: dict[str, str] = Field(
        default_factory=dict,
        description="variables filled from the run's credentials: NAME = 'credential name'",
    )
    default_timeout_s: float = Field(default=600.0, gt=0, description="a run's timeout when it gives none")
    max_timeout_s: float = Field(default=3600.0, gt=0, description="the longest timeout_s a run may ask for")
    kill_grace_s: float = Field(
        default=5.0, ge=0, description="between SIGTERM and SIGKILL when a run is canceled or times out"
    )
    tail_lines: int = Field(
        default=200, ge=1, le=100_000, description="lines of each stream kept as the result"
    )
    max_output_bytes: int = Field(
        default=200_000, ge=1024, description="bytes of each stream kept as the result (the newest)"
    )
    max_line_chars: int = Field(default=4000, ge=80, description="a longer line is cut")

    @field_validator("commands", mode="before")
    @classmethod
    def _names_alone(cls, value: Any) -> Any:
        # commands = ["make", "/usr/bin/git"]: those commands, with any arguments.
        return {name: {} for name in value} if isinstance(value, list | tuple) else value

    @field_validator("commands")
    @classmethod
    def _command_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for command in value:
            if not (os.path.isabs(command) or COMMAND_NAME.fullmatch(command)):
                raise ValueError(f"{command!r} is neither a plain command name nor an absolute path")
        return value

    @field_validator("roots")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        roots = tuple(os.path.expanduser(root) for root in value)
        for root in roots:
            if not os.path.isabs(root):
                raise ValueError(f"{root!r} is not an absolute path")
        return roots

    @field_validator("inherit_env", "allowed_env")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("credential_env")
    @classmethod
    def _credential_env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value
