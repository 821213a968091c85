"""Random hex ids (job ids, trace ids) from the OS's CSPRNG, drawn in blocks.

A submit makes two ids (the job's and its trace's); ``secrets.token_hex`` asks the kernel for
each one, a system call apiece. Here the kernel's bytes are drawn 4 KiB at a time and handed out
in order: the same source, and as unpredictable, with a system call per 128 ids. A forked child
starts on a fresh block, so it never hands out its parent's ids.
"""

from __future__ import annotations

import os
import threading

BLOCK_BYTES = 4096

_lock = threading.Lock()
_block = b""
_at = 0


def random_hex(nbytes: int) -> str:
    """``nbytes`` random bytes as ``2 * nbytes`` hex digits, as ``secrets.token_hex`` gives them."""
    global _block, _at
    with _lock:
        if _at + nbytes > len(_block):
            _block, _at = os.urandom(max(BLOCK_BYTES, nbytes)), 0
        start, _at = _at, _at + nbytes
        return _block[start:_at].hex()


def _forget_block() -> None:
    global _block, _at
    _block, _at = b"", 0


os.register_at_fork(after_in_child=_forget_block)
