"""``conveyor serve|worker|keys|webhooks|tools|call|jobs|install`` — the only place that reads argv and the environment."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio

from conveyor import strict_json
from conveyor.auth import LOCAL_USER, PLANS, ROLES, PlanName
from conveyor.cli_text import Text, job_table
from conveyor.errors import ConfigError, ConveyorError
from conveyor.executor import Executor, Outcome
from conveyor.jobs.models import JobStatus
from conveyor.local_worker import INHERITED_SETTINGS_ENV
from conveyor.logs import configure_logging
from conveyor.progress import Progress
from conveyor.registry import Registry
from conveyor.runtime import Runtime, database_started_early, open_runtime, open_tools
from conveyor.schemas import JobView
from conveyor.settings import Settings, UpstreamConfig, default_db_path, is_postgres_url, load_settings
from conveyor.toolkit_settings import configure_all

EXIT_JOIN_S = 2.0  # how long idle worker threads get to end before the process exits regardless


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand's parser, with its usage, not the top-level one
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    sys.path.append(os.getcwd())  # --toolkit my_tools finds my_tools.py here, as `python -m` would
    try:
        settings = _settings(args)
        if _serves(args):  # a server's log is for its operator: tracebacks included
            configure_logging(settings.log_level)
        else:  # a one-shot command answers on stdout; its log holds problems, one line each
            level = args.log_level or "WARNING"
            configure_logging(level, tracebacks=level == "DEBUG")
        code = args.command(args, settings)
    except ConfigError as exc:
        code = _config_error(exc)
    except BaseExceptionGroup as group:  # a ConfigError raised inside a task group (a server starting)
        matched, rest = group.split(ConfigError)
        if matched is None or rest is not None:
            raise
        code = _config_error(_first_leaf(matched))
    except KeyboardInterrupt:
        code = 130
    _exit(code)


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _serves(args: argparse.Namespace) -> bool:
    return args.command is _serve or (args.command is _worker and args.action == "run")


def _settings(args: argparse.Namespace) -> Settings:
    inherited = os.environ.get(INHERITED_SETTINGS_ENV)
    if getattr(args, "local", False) and inherited:
        # A local worker runs exactly as the server that started it (its settings, verbatim).
        return Settings.model_validate_json(inherited)
    return load_settings(args.config, overrides=_overrides(args))


def _exit(code: int) -> None:
    """Exit now, even if a sync tool's thread still runs (Python cannot stop it, and would wait
    for it at exit): the jobs were handed back before this point. Idle worker threads, which end
    by themselves, get a moment to do so."""
    deadline = time.monotonic() + EXIT_JOIN_S
    for thread in _foreground_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = _foreground_threads()
    if not stuck:
        sys.exit(code)
    logging.getLogger("conveyor").warning(
        "exiting with tool threads still running", extra={"action": "process.exit", "threads": len(stuck)}
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _foreground_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon
    ]


def _config_error(exc: BaseException) -> int:
    print(f"conveyor: error: {exc}", file=sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="settings file (TOML), e.g. conveyor.toml")
    common.add_argument(
        "--db",
        help="SQLite database file (default: ~/.local/share/conveyor/conveyor.db), or a postgresql:// URL",
    )
    common.add_argument(
        "--toolkit",
        action="append",
        dest="toolkits",
        metavar="DOTTED",
        help="load a toolkit by dotted path (package.module:attribute); repeatable",
    )
    common.add_argument(
        "--upstream",
        action="append",
        dest="upstreams",
        metavar="NAME=COMMAND|URL",
        help="serve the tools of an MCP server as NAME_<tool>: a command to run (stdio) or a URL "
        "(streamable HTTP); repeatable, in place of the settings file's [[upstreams]]",
    )
    common.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what to log on stderr (one-shot commands: WARNING; DEBUG adds tracebacks)",
    )

    parser = argparse.ArgumentParser(
        prog="conveyor", description="Run tools now or as durable background jobs."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="serve MCP over stdio, or HTTP with --http")
    serve.add_argument("--concurrency", type=int, help="jobs run at once (default 8)")
    serve.add_argument(
        "--worker",
        choices=["auto", "inline", "off"],
        help="where jobs run: inline (here), off (in a `conveyor worker`), auto (default: inline over "
        "HTTP; over stdio, a local worker that outlives the client)",
    )
    serve.add_argument("--http", action="store_true", help="serve REST and MCP (at /mcp) over HTTP")
    serve.add_argument("--host", help="HTTP address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8765)")
    serve.set_defaults(command=_serve)

    worker = commands.add_parser(
        "worker",
        parents=[common],
        help="run jobs with no front door; `worker status|stop` for the local worker",
        description="Claim and run jobs from the database until stopped (SIGTERM or Ctrl-C drain the "
        "running jobs first). `status` and `stop` show and stop the local worker that stdio servers start.",
    )
    worker.add_argument("action", nargs="?", choices=["run", "status", "stop"], default="run")
    worker.add_argument(
        "--queue", action="append", dest="queues", metavar="NAME", help="serve only this queue; repeatable"
    )
    worker.add_argument("--concurrency", type=int, help="jobs run at once (default 8)")
    worker.add_argument(
        "--local",
        action="store_true",
        help="be the database's local worker (what stdio servers start): one at most, exits when idle",
    )
    worker.set_defaults(command=_worker)

    keys = commands.add_parser("keys", help="API keys for the HTTP front door")
    key_commands = keys.add_subparsers(required=True, metavar="ACTION")
    create = key_commands.add_parser("create", parents=[common], help="make a key and print it (once)")
    create.add_argument("--role", choices=ROLES, default="user")
    create.add_argument(
        "--plan", choices=PLANS, help="default: enterprise for admin keys, free for user keys"
    )
    create.add_argument("--name", help="a label to recognise the key by")
    create.set_defaults(command=_keys_create)
    key_list = key_commands.add_parser("list", parents=[common], help="every key (never the secrets)")
    key_list.set_defaults(command=_keys_list)
    revoke = key_commands.add_parser("revoke", parents=[common], help="revoke a key by its key_id")
    revoke.add_argument("key_id")
    revoke.set_defaults(command=_keys_revoke)

    webhooks = commands.add_parser("webhooks", help="webhook deliveries")
    webhook_commands = webhooks.add_subparsers(required=True, metavar="ACTION")
    secret = webhook_commands.add_parser(
        "secret", parents=[common], help="print the secret that signs deliveries to a job's webhook_url"
    )
    secret.set_defaults(command=_webhooks_secret)

    tools = commands.add_parser("tools", parents=[common], help="list the loaded tools")
    tools.add_argument("--json", action="store_true", help="print the MCP tool definitions as JSON")
    tools.set_defaults(command=_tools)

    call = commands.add_parser("call", parents=[common], help="run a tool once and print its result")
    call.add_argument("tool")
    call.add_argument(
        "arguments",
        nargs="*",
        metavar="key=value",
        help="a text parameter takes the value as it is; others take it as JSON (a=1, tags='[\"x\"]')",
    )
    call.set_defaults(command=_call)

    db = commands.add_parser("db", help="the database's schema")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    upgrade = db_commands.add_parser(
        "upgrade",
        parents=[common],
        help="apply the migrations the database has not had (every start does too; this does only that)",
    )
    upgrade.set_defaults(command=_db_upgrade)

    jobs = commands.add_parser("jobs", help="inspect and cancel jobs in a database")
    job_commands = jobs.add_subparsers(required=True, metavar="ACTION")
    listing = job_commands.add_parser("list", parents=[common], help="newest jobs first")
    listing.add_argument("--status", choices=[s.value for s in JobStatus])
    listing.add_argument("--tool")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true", help="the page as JSON, for scripts")
    listing.set_defaults(command=_jobs_list)
    show = job_commands.add_parser("show", parents=[common], help="one job as JSON")
    show.add_argument("job_id")
    show.set_defaults(command=_jobs_show)
    cancel = job_commands.add_parser(
        "cancel", parents=[common], help="cancel a job, queued or running (in whichever process runs it)"
    )
    cancel.add_argument("job_id")
    cancel.set_defaults(command=_jobs_cancel)
    watch = job_commands.add_parser(
        "watch",
        parents=[common],
        help="live progress of jobs, whichever process runs them, until they end",
        description="Progress bars (plain lines when stdout is not a terminal) for the jobs named, or "
        "else for every queued and running job and each one submitted while watching. Ends when all "
        "have ended: exit code 0 if every one completed, 1 otherwise, 2 for an unknown job id.",
    )
    watch.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    watch.set_defaults(command=_jobs_watch)

    install = commands.add_parser("install", help="add Conveyor to an MCP client's configuration")
    install_targets = install.add_subparsers(required=True, metavar="CLIENT")
    for target, summary in (
        ("claude-desktop", "merge a Conveyor entry into Claude Desktop's config file (with a backup)"),
        ("print", 'print {"mcpServers": ...} with a Conveyor entry, for other clients (Cursor, VS Code)'),
    ):
        client = install_targets.add_parser(target, parents=[common], help=summary, description=summary)
        client.add_argument(
            "--name", default="conveyor", help="the server's name in the config (default conveyor)"
        )
        if target == "claude-desktop":
            client.add_argument(
                "--dry-run", action="store_true", help="print what would be written; change nothing"
            )
        client.set_defaults(command=_install, target=target)
    for subparser in _subparsers(parser):
        subparser.set_defaults(parser=subparser)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subparsers(child)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("db", "toolkits", "log_level", "concurrency", "host", "port", "worker", "queues")
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "upstreams", None):
        try:
            values["upstreams"] = tuple(UpstreamConfig.from_flag(flag) for flag in args.upstreams)
        except ValueError as exc:
            raise ConfigError(
                str(exc).splitlines()[-1] if "validation error" in str(exc) else str(exc)
            ) from None
    return values


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    anyio.run(_serve_started_early, args.http, settings)
    return 0


async def _serve_started_early(http: bool, settings: Settings) -> None:
    # The servers' modules are imported with the database process already starting: a client
    # that starts a server for each call waits for one of the two starts, not both.
    async with database_started_early(settings):
        if http:
            from conveyor.http_api import serve_http

            await serve_http(settings)
            return
        from conveyor.mcp_server.stdio import serve_stdio

        await serve_stdio(settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor import local_worker

    if args.action == "status":
        info = local_worker.status(settings.db)
        print(json.dumps({**info.to_public(), "workers": _live_workers(settings)}, indent=2))
        return 0 if info.running else 3  # as `pg_ctl status`: 3 means not running
    if args.action == "stop":
        return _stop_local_worker(settings)
    from conveyor.worker import run_worker

    anyio.run(lambda: run_worker(settings, local=args.local))
    return 0


def _live_workers(settings: Settings) -> list[dict[str, Any]]:
    """Every process running jobs on this database (the local worker is one), by their heartbeats."""
    if not is_postgres_url(settings.db) and not os.path.exists(settings.db):
        return []

    async def look() -> list[dict[str, Any]]:
        async with open_runtime(settings, run_workers=False) as runtime:
            return [worker.to_public() for worker in await runtime.engine.live_workers()]

    return anyio.run(look)


def _stop_local_worker(settings: Settings) -> int:
    from conveyor import local_worker

    info = local_worker.status(settings.db)
    if not info.running or info.pid is None:
        print(json.dumps({**info.to_public(), "stopped": False}, indent=2))
        return 0
    os.kill(info.pid, signal.SIGTERM)  # it drains its running jobs first
    deadline = time.monotonic() + settings.shutdown_grace_seconds + 10
    while local_worker.status(settings.db).running:
        if time.monotonic() > deadline:
            print(f"conveyor: error: the local worker (pid {info.pid}) did not stop", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(json.dumps({**info.to_public(), "running": False, "stopped": True}, indent=2))
    return 0


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    async def action(runtime: Runtime) -> Any:
        plan: PlanName = args.plan or (
            "enterprise" if args.role == "admin" else "free"
        )  # as the first start's
        key, secret = await runtime.keys.create(role=args.role, plan=plan, name=args.name)
        return {**key.to_public(), "key": secret}

    return _with_runtime(settings, action)


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    async def action(runtime: Runtime) -> Any:
        return {"keys": [key.to_public() for key in await runtime.keys.list()]}

    return _with_runtime(settings, action)


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def action(runtime: Runtime) -> Any:
        if not await runtime.keys.revoke(args.key_id):
            raise ConfigError(f"no active key {args.key_id!r}")
        return {"key_id": args.key_id, "revoked": True}

    return _with_runtime(settings, action)


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.jobs.queries import load_migrations
    from conveyor.runtime import open_store

    async def upgrade() -> dict[str, Any]:
        store = open_store(settings)
        await store.open()
        try:
            dialect = "postgres" if is_postgres_url(settings.db) else "sqlite"
            latest = load_migrations(dialect)[-1][0]
            return {"db": store.where, "applied": store.applied_migrations, "version": latest}
        finally:
            await store.close()

    print(json.dumps(anyio.run(upgrade), indent=2))
    return 0


def _webhooks_secret(args: argparse.Namespace, settings: Settings) -> int:
    async def action(runtime: Runtime) -> Any:
        return {"webhook_secret": runtime.webhooks.server_secret}

    return _with_runtime(settings, action)


def _tools(args: argparse.Namespace, settings: Settings) -> int:
    async def listed() -> Registry:
        async with open_tools(settings) as registry:  # with the upstream servers' tools
            return registry

    registry = anyio.run(listed)
    if args.json:
        from conveyor.mcp_server.server import mcp_tool

        dumped = [mcp_tool(t).model_dump(by_alias=True, mode="json", exclude_none=True) for t in registry]
        print(json.dumps(dumped, indent=2))
        return 0
    width = max((len(tool.wire_name) for tool in registry), default=0)
    for tool in registry:
        summary = tool.description.splitlines()[0] if tool.description else ""
        print(f"{tool.wire_name:<{width}}  {summary}")
    return 0


def _call(args: argparse.Namespace, settings: Settings) -> int:
    async def show_progress(progress: Progress) -> None:
        print(f"progress: {json.dumps(progress.to_dict())}", file=sys.stderr)

    async def call() -> Outcome:
        async with open_tools(settings) as registry:  # an upstream server's tool is called through it
            tool = registry.get(args.tool) if args.tool in registry else None
            properties = tool.input_schema.get("properties", {}) if tool is not None else {}
            arguments = dict(_parse_pair(pair, properties) for pair in args.arguments)
            configs = configure_all(registry.toolkits, settings.toolkit_settings)
            executor = Executor(registry, settings.execution_limits(), configs)
            return await executor.run(args.tool, arguments, progress=show_progress)

    try:
        outcome = anyio.run(call)
    except ConveyorError as exc:
        print(json.dumps({"error": exc.to_payload()}, indent=2))
        return 1
    print(json.dumps(outcome.result, indent=2, ensure_ascii=False))
    return 0


def _parse_pair(pair: str, properties: dict[str, Any]) -> tuple[str, Any]:
    """``key=value`` read as the tool's schema says: text for a string parameter, else JSON (or
    the text as it is, which the tool's validation then refuses with a clear error)."""
    key, sep, raw = pair.partition("=")
    if not sep or not key:
        raise ConfigError(f"argument {pair!r} is not key=value")
    if _takes_text(properties.get(key, {})):
        return key, raw
    try:
        return key, strict_json.loads(raw)
    except strict_json.NotStrictJson:
        return key, raw


def _takes_text(schema: dict[str, Any]) -> bool:
    types = {schema.get("type")} | {option.get("type") for option in schema.get("anyOf", [])}
    return "string" in types and types <= {"string", "null", None}


def _with_runtime(settings: Settings, action: Any) -> int:
    """Run one action against the database without starting workers; print its JSON."""

    async def run() -> int:
        async with open_runtime(settings, run_workers=False) as runtime:
            await _say_if_default_and_empty(runtime)
            try:
                answer = await action(runtime)
                print(
                    answer if isinstance(answer, Text) else json.dumps(answer, indent=2, ensure_ascii=False)
                )
                return 0
            except ConveyorError as exc:
                print(json.dumps({"error": exc.to_payload()}, indent=2))
                return 1
            except ConfigError as exc:
                # Left to main, it would reach it wrapped in the runtime's exception group.
                return _config_error(exc)

    return anyio.run(run)


async def _say_if_default_and_empty(runtime: Runtime) -> None:
    """A key made in, or a job looked for in, the default database when the server uses another
    would be refused or not found with no hint why: say which database this is, while it is empty."""
    if runtime.settings.db != default_db_path():
        return
    jobs = (await runtime.engine.list(owner=None, limit=1))[1]
    if jobs == 0 and not await runtime.keys.any_active():
        print(
            f"conveyor: using the default database {runtime.settings.db}, which has no jobs or keys yet; "
            "pass --db as you did to `conveyor serve` to use that one",
            file=sys.stderr,
        )


def _with_engine(settings: Settings, action: Any) -> int:
    async def on_engine(runtime: Runtime) -> Any:
        return await action(runtime.engine)

    return _with_runtime(settings, on_engine)


def _jobs_list(args: argparse.Namespace, settings: Settings) -> int:
    async def action(engine: Any) -> Any:
        status = JobStatus(args.status) if args.status else None
        jobs, total = await engine.list(
            owner=None, status=status, tool=args.tool, limit=args.limit, offset=args.offset
        )
        page = {"limit": args.limit, "offset": args.offset, "total": total}
        views = [JobView.of(job) for job in jobs]
        return {"jobs": views, "pagination": page} if args.json else Text(job_table(views, page))

    return _with_engine(settings, action)


def _jobs_show(args: argparse.Namespace, settings: Settings) -> int:
    async def action(engine: Any) -> Any:
        return JobView.of(await engine.get(args.job_id, owner=None))

    return _with_engine(settings, action)


def _jobs_cancel(args: argparse.Namespace, settings: Settings) -> int:
    async def action(engine: Any) -> Any:
        return JobView.of(await engine.cancel(args.job_id, owner=LOCAL_USER.visible_owner))

    return _with_engine(settings, action)


def _jobs_watch(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.jobs_watch import Bars, Display, Lines, watch_jobs

    display: Display = Bars(sys.stdout) if sys.stdout.isatty() else Lines(sys.stdout)

    async def watch() -> int:
        async with open_runtime(settings, run_workers=False) as runtime:
            await _say_if_default_and_empty(runtime)
            try:
                return await watch_jobs(runtime.engine, args.job_ids, display)
            except ConveyorError as exc:  # an unknown job id
                print(f"conveyor: error: {exc.code}: {exc.message}", file=sys.stderr)
                return 2

    return anyio.run(watch)


def _install(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor import desktop_install

    # A toolkit that does not load fails here, where it can be fixed, not later in the client.
    Registry.load(settings.toolkits, entry_points_enabled=settings.entry_points)
    entry = desktop_install.server_entry(
        settings,
        toolkits=args.toolkits or (),
        upstreams=args.upstreams or (),
        config_file=args.config,
        launched_as=sys.argv[0],
        cwd=os.getcwd(),
    )
    if args.target == "print":
        print(json.dumps({"mcpServers": {args.name: entry}}, indent=2, ensure_ascii=False))
        return 0
    path = desktop_install.claude_desktop_config_path(sys.platform, os.environ)
    change = desktop_install.merge_into(path, args.name, entry, dry_run=args.dry_run)
    if args.dry_run:  # the file it would write on stdout, the note on stderr
        print(change.written, end="")
    print(change.report(), file=sys.stderr if args.dry_run else sys.stdout)
    return 0


if __name__ == "__main__":
    main()
