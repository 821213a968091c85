"""Per-run credentials in a request, by name: ``{credential:NAME}`` in a header or a query
parameter is replaced with the run's credential ``NAME`` just before sending. The arguments (and so
the job, its logs and errors) hold only the name; what came back is redacted of every value."""

from __future__ import annotations

import re
from collections.abc import Mapping

from conveyor.errors import InvalidArguments

PLACEHOLDER = re.compile(r"\{credential:([A-Za-z0-9_.-]{1,64})\}")


def fill(value: str, credentials: Mapping[str, str], *, argument: str) -> tuple[str, list[str]]:
    """``value`` with its placeholders filled, and the secrets it now holds."""
    used: list[str] = []

    def secret(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in credentials:
            raise InvalidArguments(
                f"{argument} names the credential {name!r}, which this run was not given",
                argument=argument,
                suggested_fix=f'Pass it with the call: "credentials": {{"{name}": "..."}}.',
            )
        used.append(credentials[name])
        return credentials[name]

    return PLACEHOLDER.sub(secret, value), used
