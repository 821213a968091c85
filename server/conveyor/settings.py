"""Frozen settings, read once at the edge: TOML file, then ``CONVEYOR_*`` env, then flags."""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from conveyor.auth import PlanName
from conveyor.errors import ConfigError
from conveyor.executor import ExecutionLimits
from conveyor.jobs.engine import EngineConfig
from conveyor.limits import PlanLimits
from conveyor.webhooks import WebhookConfig

ENV_PREFIX = "CONVEYOR_"
# CONVEYOR_ variables that are not settings: what clients and examples read, what a local
# worker inherits, and what Conveyor's own test suite reads.
NOT_SETTINGS = frozenset({"CONVEYOR_URL", "CONVEYOR_API_KEY", "CONVEYOR_INHERITED_SETTINGS"})
TEST_PREFIX = "CONVEYOR_TEST_"
DEFAULT_TOOLKITS = ("conveyor_toolkits.demo:toolkit",)


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgres://", "postgresql://"))


def default_db_path() -> str:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "conveyor" / "conveyor.db")


_CREDENTIAL_FIELD = re.compile(r"\{([A-Za-z0-9_.-]{1,64})\}")


def credential_names(template: str) -> list[str]:
    """The credentials a header template names: ``Bearer {github}`` names ``github``."""
    return _CREDENTIAL_FIELD.findall(template)


def fill_credentials(template: str, credentials: Mapping[str, str]) -> str:
    return _CREDENTIAL_FIELD.sub(lambda match: credentials[match.group(1)], template)


class UpstreamConfig(BaseModel):
    """An MCP server Conveyor stands in front of: its tools are served as ``<name>_<tool>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z0-9-]{1,32}$", description="the toolkit name its tools get")
    command: tuple[str, ...] | None = Field(default=None, min_length=1, description="run it, speaking stdio")
    url: str | None = Field(
        default=None, pattern=r"^https?://", description="or reach it over streamable HTTP"
    )
    env: dict[str, str] = Field(default_factory=dict, description="stdio: variables added to its environment")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP: headers sent with every request")
    credential_headers: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP: headers made from a run's credentials, e.g. Authorization = 'Bearer {github}'",
    )
    cwd: str | None = Field(default=None, description="stdio: the directory it runs in")
    protocol: Literal["auto", "legacy"] = Field(
        default="auto", description="auto: whatever it speaks; legacy: the 2025-11-25 handshake only"
    )

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"upstream {self.name!r} needs either command or url")
        if self.credential_headers and self.url is None:
            raise ValueError(
                f"upstream {self.name!r}: credential_headers need a url (a stdio server is shared)"
            )
        for template in self.credential_headers.values():
            if not credential_names(template):
                raise ValueError(f"upstream {self.name!r}: {template!r} names no credential, as {{name}}")
        return self

    @classmethod
    def from_flag(cls, value: str) -> UpstreamConfig:
        """``NAME=COMMAND ARGS…`` (stdio) or ``NAME=URL`` (streamable HTTP), as ``--upstream`` takes it."""
        name, _, target = value.partition("=")
        if not target.strip():
            raise ValueError(f"--upstream {value!r}: write NAME=COMMAND or NAME=URL")
        if target.startswith(("http://", "https://")):
            return cls(name=name, url=target)
        return cls(name=name, command=tuple(shlex.split(target)))


class OpenAPIConfig(BaseModel):
    """A REST API described by an OpenAPI 3.x document: each operation is served as
    ``<name>_<operationId>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z0-9-]{1,32}$", description="the toolkit name its tools get")
    spec: str = Field(min_length=1, description="the document: a file path, or an http(s) URL")
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="where to call it; unset: the document's first server",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="headers sent with every call (auth)")
    allow_private_addresses: bool = Field(
        default=False, description="let its calls reach loopback, private and link-local addresses"
    )
    timeout_seconds: float = Field(default=60.0, gt=0, description="each call's HTTP timeout")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    db: str = Field(default_factory=default_db_path, description="a SQLite file path, or a postgresql:// URL")
    toolkits: tuple[str, ...] = Field(DEFAULT_TOOLKITS, description="toolkits by dotted path")
    entry_points: bool = Field(True, description="also load toolkits of the conveyor.toolkits entry points")
    concurrency: int = Field(8, ge=1, le=100_000)
    queues: tuple[str, ...] | None = None
    worker: Literal["auto", "inline", "off"] = Field(
        "auto",
        description="where `serve` runs jobs: inline (this process), off (elsewhere), "
        "auto (inline over HTTP; over stdio, a local worker that outlives the client)",
    )
    worker_idle_exit_seconds: float = Field(300.0, gt=0, description="the local worker exits this idle")
    shutdown_grace_seconds: float = Field(10.0, ge=0, description="how long a stop lets running jobs finish")
    store_write_timeout_seconds: float = Field(
        10.0, gt=0, description="how long a request waits for a busy database before STORE_UNAVAILABLE"
    )
    lease_seconds: float = Field(30.0, gt=0)
    sweep_interval_seconds: float = Field(5.0, gt=0)
    retention_hours: float = Field(24 * 7, gt=0)
    progress_interval_seconds: float = Field(0.25, ge=0)
    default_timeout_ms: int | None = Field(3_600_000, gt=0)
    max_argument_bytes: int = Field(1_000_000, gt=0)
    max_result_bytes: int = Field(5_000_000, gt=0)
    max_json_depth: int = Field(64, ge=2, le=512, description="deepest nesting a request's JSON may have")
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    postgres_pool_size: int = Field(
        10, ge=2, le=1000, description="connections each process keeps open to PostgreSQL"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    allowed_hosts: tuple[str, ...] = Field(
        (), description="extra Host values /mcp accepts, e.g. api.example.com"
    )
    allowed_origins: tuple[str, ...] = Field((), description="extra Origin values /mcp accepts")
    max_request_bytes: int = Field(2_000_000, gt=0)
    enterprise_requests_per_minute: int = Field(1000, gt=0)
    enterprise_max_concurrent_jobs: int = Field(50, gt=0)
    enterprise_max_sessions: int = Field(256, gt=0, description="MCP sessions one enterprise key may hold")
    enterprise_max_streams: int = Field(256, gt=0, description="event streams one enterprise key may hold")
    max_sessions: int = Field(10_000, gt=0, description="MCP sessions (2025 era, HTTP) open at once, in all")
    max_streams: int = Field(1024, gt=0, description="event streams (SSE, MCP listens) open at once, in all")
    session_idle_seconds: float = Field(600.0, gt=0, description="an idle MCP session is closed after this")
    metrics_public: bool = Field(False, description="serve /metrics without an admin key")
    task_poll_interval_ms: int = Field(1000, gt=0, description="the pollInterval MCP tasks suggest")
    job_wait_seconds: float = Field(
        4.0,
        ge=0,
        le=25,
        description="how long jobs_status waits for a job when the model gives no wait_seconds: below "
        "the shortest request timeout of your MCP clients (openai-agents: 5 s)",
    )
    task_inline_threshold_ms: int = Field(
        5000, gt=0, description="2026 clients: optional-task tools that usually run longer become tasks"
    )
    webhook_secret: SecretStr | None = Field(
        None,
        min_length=16,
        description="signs deliveries to a job's own webhook_url; unset: made once and kept in the database",
    )
    webhook_allow_private_addresses: bool = Field(
        False, description="let webhooks reach loopback, private and link-local addresses"
    )
    webhook_max_attempts: int = Field(10, ge=1, le=100)
    webhook_retry_base_seconds: float = Field(10.0, gt=0, description="first retry delay, then doubling")
    webhook_retry_max_seconds: float = Field(3600.0, gt=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=300)
    webhook_concurrency: int = Field(8, ge=1, le=1000)
    upstreams: tuple[UpstreamConfig, ...] = Field(
        (), description="MCP servers whose tools Conveyor serves (TOML [[upstreams]] tables)"
    )
    upstream_connect_timeout_seconds: float = Field(
        10.0, gt=0, description="how long a start, or a call, waits for an upstream server to connect"
    )

    openapi: tuple[OpenAPIConfig, ...] = Field(
        (), description="REST APIs whose operations Conveyor serves as tools (TOML [[openapi]] tables)"
    )
    tools_listed: tuple[str, ...] | None = Field(
        None,
        description="toolkits whose tools tools/list shows (the jobs_* and tools_search meta-tools always); "
        "unset: all. The others stay callable, and findable with tools_search",
    )
    toolkit_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="each toolkit's own settings, by toolkit name (TOML [toolkit_settings.<name>] tables); "
        "checked against the toolkit's settings model when it is loaded",
    )
    credentials_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="encrypts per-run credentials at rest (a Fernet key); unset on SQLite: made once and "
        "kept beside the database file; PostgreSQL needs it set, the same on every server and worker",
    )

    @field_validator("credentials_key", mode="after")
    @classmethod
    def _a_fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from cryptography.fernet import Fernet  # only a server given a key pays for the import

            try:
                Fernet(value.get_secret_value().encode())
            except ValueError:
                raise ValueError(
                    "must be a Fernet key: 32 random bytes, url-safe base64 (make one with "
                    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
                ) from None
        return value

    @field_validator("upstreams", "openapi", "toolkit_settings", mode="before")
    @classmethod
    def _tables_as_json(cls, value: Any) -> Any:
        # CONVEYOR_UPSTREAMS, CONVEYOR_OPENAPI, CONVEYOR_TOOLKIT_SETTINGS
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _toolkit_names_unique(self) -> Settings:
        names = [upstream.name for upstream in self.upstreams] + [api.name for api in self.openapi]
        if len(names) != len(set(names)):
            raise ValueError(
                f"two upstreams or OpenAPI toolkits have one name: "
                f"{sorted(n for n in names if names.count(n) > 1)[0]}"
            )
        return self

    @field_validator("toolkits", "queues", "allowed_hosts", "allowed_origins", "tools_listed", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def with_secrets(self) -> str:
        """These settings as JSON, secrets in clear: what a local worker started by this process
        inherits (through its environment, never a file), so that both run the same way."""
        values = self.model_dump(mode="python")
        for name in ("webhook_secret", "credentials_key"):
            secret = getattr(self, name)
            if secret is not None:
                values[name] = secret.get_secret_value()
        return json.dumps(values)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            concurrency=self.concurrency,
            queues=self.queues,
            lease_ms=int(self.lease_seconds * 1000),
            sweep_interval_s=self.sweep_interval_seconds,
            retention_s=self.retention_hours * 3600,
            progress_interval_s=self.progress_interval_seconds,
            allow_private_urls=self.webhook_allow_private_addresses,
        )

    def webhook_config(self) -> WebhookConfig:
        return WebhookConfig(
            max_attempts=self.webhook_max_attempts,
            retry_base_s=self.webhook_retry_base_seconds,
            retry_max_s=self.webhook_retry_max_seconds,
            timeout_s=self.webhook_timeout_seconds,
            concurrency=self.webhook_concurrency,
            allow_private_addresses=self.webhook_allow_private_addresses,
            poll_interval_s=self.sweep_interval_seconds,
            retention_s=self.retention_hours * 3600,
            secret=self.webhook_secret.get_secret_value() if self.webhook_secret else None,
        )

    def plan_limits(self) -> dict[PlanName, PlanLimits]:
        # free and pro are the public API's plans; enterprise is whatever this deployment sells.
        return {
            "free": PlanLimits(requests_per_minute=10, max_concurrent_jobs=1, max_sessions=4, max_streams=4),
            "pro": PlanLimits(
                requests_per_minute=100, max_concurrent_jobs=5, max_sessions=32, max_streams=32
            ),
            "enterprise": PlanLimits(
                self.enterprise_requests_per_minute,
                self.enterprise_max_concurrent_jobs,
                max_sessions=self.enterprise_max_sessions,
                max_streams=self.enterprise_max_streams,
            ),
        }

    def execution_limits(self) -> ExecutionLimits:
        return ExecutionLimits(
            max_argument_bytes=self.max_argument_bytes,
            max_result_bytes=self.max_result_bytes,
            default_timeout_ms=self.default_timeout_ms,
            max_json_depth=self.max_json_depth,
        )


def load_settings(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the three sources (later wins) and validate once; ``ConfigError`` says what is wrong."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(Path(config_file)))
    values.update(_from_env(os.environ if env is None else env))
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.pop("conveyor", {})  # a [conveyor] table, and keys beside it ([[upstreams]], …)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: 'conveyor' must be a table")
    both = sorted(set(section) & set(data))
    if both:
        raise ConfigError(f"config file {path}: {both[0]} is set both in [conveyor] and outside it")
    return {key.replace("-", "_"): value for key, value in {**data, **section}.items()}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``CONVEYOR_<SETTING>`` variables; a misspelled one is refused, as an unknown TOML key is."""
    known = set(Settings.model_fields)
    values: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS or key.startswith(TEST_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}?)" if close else ""
            raise ConfigError(f"{key} is not a Conveyor setting{hint}")
        values[name] = value
    return values
