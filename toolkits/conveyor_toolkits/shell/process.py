"""Running one command in a process group of its own, and stopping the whole group.

The command starts a new session (``start_new_session``), so it and every child it starts share
a process group that can be signalled at once. When the run ends, however it ends (the command
exits, the run is canceled or times out), the group is stopped: SIGTERM, ``grace_s`` to exit,
then SIGKILL. A process that leaves the group (``setsid``, a daemon) is out of its reach.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable

import anyio
import anyio.abc

from conveyor_toolkits.shell.output import StreamTail
from conveyor_toolkits.shell.policy import Invocation

POLL_S = 0.05  # how often a stopping group is looked at: its members are not our children to wait on
PIPE_DRAIN_S = 1.0  # after the group is gone, how long a pipe held by an escaped process is read

OnLine = Callable[[StreamTail, str], None]


async def run_command(
    invocation: Invocation, out: StreamTail, err: StreamTail, on_line: OnLine, *, grace_s: float
) -> int:
    """Run the command to its end and return its exit code (negative: the signal that ended
    it). Cancelling this (a cancel, a timeout) stops the group before the cancellation goes on."""
    process = await anyio.open_process(
        invocation.argv,
        stdin=subprocess.DEVNULL if invocation.stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=invocation.cwd,
        env=invocation.env,
        start_new_session=True,
    )
    group = ProcessGroup(process)
    try:
        async with anyio.create_task_group() as tg:
            drained = anyio.Event()
            tg.start_soon(_read_both, process, out, err, on_line, drained)
            if invocation.stdin is not None and process.stdin is not None:
                tg.start_soon(_feed, process.stdin, invocation.stdin)
            code = await process.wait()
            await group.stop(grace_s)  # what the command left running goes with it
            with anyio.move_on_after(PIPE_DRAIN_S):
                await drained.wait()
            tg.cancel_scope.cancel()
        return code
    finally:
        with anyio.CancelScope(shield=True):
            await group.stop(grace_s)
            await process.aclose()  # reaps the command itself


class ProcessGroup:
    """The process group a command leads (its id is the command's pid)."""

    def __init__(self, leader: anyio.abc.Process) -> None:
        self.leader = leader
        self.pgid = leader.pid

    def alive(self) -> bool:
        """Whether the command or anything in its group still runs (exited ones awaiting their
        parent's wait are not running)."""
        return self.leader.returncode is None or _has_live_members(self.pgid)

    async def stop(self, grace_s: float) -> None:
        if not self.alive():
            return
        self._signal(signal.SIGTERM)
        with anyio.move_on_after(grace_s):
            await self.leader.wait()
            await self._members_gone()
        if self.alive():
            self._signal(signal.SIGKILL)

    async def _members_gone(self) -> None:
        # The others are not our children: nothing tells when they end, so they are looked at.
        while True:
            if not _has_live_members(self.pgid):
                return
            await anyio.sleep(POLL_S)

    def _signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or a setuid member
            os.killpg(self.pgid, number)


def _has_live_members(pgid: int) -> bool:
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except FileNotFoundError:  # no /proc (macOS): ask the group itself, which counts zombies too
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:  # ended while we looked
            continue
        # After "pid (name) ": state, ppid, pgrp. The name may hold anything, so split after its ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


async def _read_both(
    process: anyio.abc.Process, out: StreamTail, err: StreamTail, on_line: OnLine, drained: anyio.Event
) -> None:
    async with anyio.create_task_group() as tg:
        for stream, tail in ((process.stdout, out), (process.stderr, err)):
            if stream is not None:
                tg.start_soon(_read, stream, tail, on_line)
    drained.set()


async def _read(stream: anyio.abc.ByteReceiveStream, tail: StreamTail, on_line: OnLine) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async for chunk in stream:
            for line in tail.feed(chunk):
                on_line(tail, line)
    for line in tail.finish():
        on_line(tail, line)


async def _feed(stream: anyio.abc.ByteSendStream, data: bytes) -> None:
    """Write the run's stdin, then close it; a command that stops reading early is no error."""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.send(data)
        await stream.aclose()
