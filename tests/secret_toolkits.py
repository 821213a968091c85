"""Tools with secret parameters, for test_secret_arguments.py: each uses its secret, and most also
try to leak it (in their result, progress, steps, logs and errors), which Conveyor must redact.

Kept out of tests/toolkits.py: a secret's schema says ``writeOnly`` and ``format: password``,
which the strict-mode checks of test_schemas.py count as keywords OpenAI's strict mode lacks.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from typing import Annotated

import anyio
from pydantic import AfterValidator, BaseModel, SecretStr

from conveyor import RetryPolicy, Secret, ToolContext, Toolkit

toolkit = Toolkit("secretkit", description="Tools with secret parameters, for Conveyor's tests.")
logger = logging.getLogger("tests.secretkit")

started = anyio.Event()  # a held tool has started
release = anyio.Event()  # lets a held tool end
attempts: Counter[str] = Counter()  # runs of flaky_login by key


def reset() -> None:
    global started, release
    started = anyio.Event()
    release = anyio.Event()
    attempts.clear()


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Login(BaseModel):
    user: str
    digest: str
    echo: str


@toolkit.tool
async def login(ctx: ToolContext, user: str, password: Annotated[str, Secret()]) -> Login:
    """Log in with a password; tries to leak it in every way a tool can."""
    ctx.report_progress(1, 2, f"checking {password}", step=f"step {password}")
    ctx.record_step("checked", {"password": password})
    ctx.log(f"tool log says {password}", password=password)
    logger.warning("a library logs %s", password)
    return Login(user=user, digest=digest(password), echo=f"password was {password}")


@toolkit.tool
def token_kind(token: SecretStr) -> dict[str, str]:
    """A sync tool taking pydantic's SecretStr: what it received, and the digest of its value."""
    logger.warning("token is %s", token.get_secret_value())
    return {"type": type(token).__name__, "digest": digest(token.get_secret_value())}


@toolkit.tool
async def fail_with(password: Annotated[str, Secret()]) -> str:
    """Fails, its error message quoting the password."""
    raise ValueError(f"wrong password {password!r}")


def _long_enough(value: str) -> str:
    if len(value) < 12:
        raise ValueError(f"{value!r} is shorter than 12 characters")
    return value


@toolkit.tool
async def strict_pin(pin: Annotated[str, Secret(), AfterValidator(_long_enough)]) -> str:
    """A secret whose validator's message quotes the value it refuses."""
    return digest(pin)


@toolkit.tool(idempotent=True, open_world=False, retry=RetryPolicy(max_attempts=3, backoff_ms=1))
async def flaky_login(key: str, password: Annotated[str, Secret()]) -> str:
    """Fails its first run per key (quoting the password), then answers the password's digest:
    a retry must get the secret back from the seal."""
    attempts[key] += 1
    if attempts[key] == 1:
        raise RuntimeError(f"flaky: {password}")
    return digest(password)


@toolkit.tool(idempotent=True, open_world=False)
async def held_login(password: Annotated[str, Secret()]) -> str:
    """Runs until the test releases it, then answers the password's digest."""
    started.set()
    await release.wait()
    return digest(password)
