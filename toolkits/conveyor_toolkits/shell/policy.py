"""What a ``shell_run`` call may do, decided before anything runs: the command against the
allow-list, its arguments against the command's patterns, the directory inside a root (resolved,
so neither ``..`` nor a symlink leads out), the environment from allow-lists and the run's
credentials. The outcome is an ``Invocation``: an argv, never a shell command line."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from conveyor.errors import ExecutionError, Forbidden, InvalidArguments
from conveyor_toolkits.shell.settings import CommandRule, ShellSettings
from conveyor_toolkits.timeouts import bounded_timeout

SHOWN_CHARS = 80  # of a refused value, in an error: enough to recognise it


@dataclass(frozen=True, slots=True)
class Invocation:
    argv: tuple[str, ...]  # the executable's absolute path, then the arguments
    cwd: str
    env: dict[str, str]
    timeout_s: float
    stdin: bytes | None


def prepare(
    settings: ShellSettings,
    *,
    command: str,
    args: Sequence[str],
    cwd: str | None,
    env: Mapping[str, str],
    timeout_s: float | None,
    stdin: str | None,
    credentials: Mapping[str, str],
    server_env: Mapping[str, str],
) -> Invocation:
    """The invocation these arguments ask for, or the coded error saying why it may not run."""
    for argument, values in (("command", [command]), ("args", args), ("env", [*env, *env.values()])):
        for value in values:
            _no_nul(value, argument)
    _no_nul(cwd or "", "cwd")
    rule = _rule(settings, command)
    _check_args(rule, command, args)
    child_env = _environment(settings, env, credentials, server_env)
    return Invocation(
        argv=(_executable(command, child_env), *args),
        cwd=_directory(settings, cwd),
        env=child_env,
        timeout_s=bounded_timeout(
            timeout_s, default_s=settings.default_timeout_s, max_s=settings.max_timeout_s
        ),
        stdin=None if stdin is None else stdin.encode(),
    )


def _no_nul(value: str, argument: str) -> None:
    if "\0" in value:
        raise InvalidArguments(
            f"{argument} holds a NUL character, which no command line can", argument=argument
        )


def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…")


def _rule(settings: ShellSettings, command: str) -> CommandRule:
    rule = settings.commands.get(command)
    if rule is None:
        allowed = ", ".join(sorted(settings.commands)) or "none"
        raise Forbidden(
            f"command {_shown(command)} is not on the shell allow-list",
            argument="command",
            suggested_fix=f"Run one of the allowed commands ({allowed}), one program per call, with its "
            "arguments in args (no shell syntax). The operator sets the list in "
            "[toolkit_settings.shell.commands].",
        )
    return rule


def _check_args(rule: CommandRule, command: str, args: Sequence[str]) -> None:
    if len(args) > rule.max_args:
        raise Forbidden(
            f"{command} takes at most {rule.max_args} arguments here; got {len(args)}", argument="args"
        )
    if rule.args is None:
        return
    for index, value in enumerate(args):
        if not any(pattern.fullmatch(value) for pattern in rule.args):
            raise Forbidden(
                f"argument {index} of {command}, {_shown(value)}, matches none of its allowed patterns",
                argument="args",
                details={"index": index, "patterns": [pattern.pattern for pattern in rule.args]},
                suggested_fix="Give arguments that match the allowed patterns; each argument is passed "
                "as it is, never through a shell.",
            )


def _environment(
    settings: ShellSettings,
    requested: Mapping[str, str],
    credentials: Mapping[str, str],
    server_env: Mapping[str, str],
) -> dict[str, str]:
    refused = sorted(name for name in requested if name not in settings.allowed_env)
    if refused:
        raise Forbidden(
            f"env may not set {refused[0]}",
            argument="env",
            suggested_fix=f"Set only these variables: {', '.join(settings.allowed_env) or 'none'}.",
        )
    child = {name: server_env[name] for name in settings.inherit_env if name in server_env}
    child.update(requested)
    child.update(
        {
            name: credentials[credential]
            for name, credential in settings.credential_env.items()
            if credential in credentials
        }
    )
    return child


def _executable(command: str, env: Mapping[str, str]) -> str:
    found = command if os.path.isabs(command) else shutil.which(command, path=env.get("PATH", os.defpath))
    if found is None or not (os.path.isfile(found) and os.access(found, os.X_OK)):
        raise ExecutionError(
            f"command {command!r} is allowed but cannot be found or run on this machine",
            suggested_fix="Ask the operator to install it, or to fix PATH or the path in the allow-list.",
        )
    return os.path.abspath(found)


def _directory(settings: ShellSettings, cwd: str | None) -> str:
    if not settings.roots:
        raise Forbidden(
            "the shell toolkit has no roots to run commands in",
            argument="cwd",
            suggested_fix="Ask the operator to set roots in [toolkit_settings.shell].",
        )
    # Resolved whole: ``..`` and every symlink on the way are followed before the check.
    wanted = os.path.realpath(os.path.join(settings.roots[0], cwd or "."))
    roots = [os.path.realpath(root) for root in settings.roots]
    if not any(os.path.commonpath([root, wanted]) == root for root in roots):
        raise Forbidden(
            f"cwd {_shown(cwd or '.')} resolves outside the allowed roots",
            argument="cwd",
            suggested_fix=f"Use a directory inside {', '.join(settings.roots)} (relative paths start at "
            f"{settings.roots[0]}).",
        )
    if not os.path.isdir(wanted):
        raise InvalidArguments(f"cwd {_shown(cwd or '.')} is not a directory", argument="cwd")
    return wanted
