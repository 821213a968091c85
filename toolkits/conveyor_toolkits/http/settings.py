"""The ``http`` toolkit's settings: ``[toolkit_settings.http]`` in conveyor.toml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork


class HttpSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_private_addresses: bool = Field(
        default=False, description="let requests reach loopback, private and link-local addresses"
    )
    allowed_networks: tuple[IPvAnyNetwork, ...] = Field(
        default=(), description="non-public networks requests may reach all the same, e.g. '10.1.0.0/16'"
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="if set, the only hosts requests may reach ('api.example.com', '*.example.com')",
    )
    denied_hosts: tuple[str, ...] = Field(default=(), description="hosts requests may never reach")
    max_response_bytes: int = Field(default=1_000_000, gt=0, description="a larger response is refused")
    default_timeout_s: float = Field(default=30.0, gt=0, description="a request's timeout when it gives none")
    max_timeout_s: float = Field(
        default=300.0, gt=0, description="the longest timeout_s a request may ask for"
    )
    max_redirects: int = Field(default=5, ge=0, le=20, description="redirects followed, each checked again")
