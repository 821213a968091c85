"""The logfmt lines on stderr: what each record becomes."""

from __future__ import annotations

import logging
import time

from conveyor.logs import LogfmtFormatter


def record(message: str, created: float, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("conveyor.engine").makeRecord(
        "conveyor.engine", logging.INFO, __file__, 1, message, (), None, extra=extra
    )
    made.created = created
    return made


def stamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(created))


def test_a_line_has_time_level_logger_action_message_then_extras_in_order() -> None:
    created = 1_790_000_000.25
    line = LogfmtFormatter().format(
        record("job finished", created, action="job.finished", job_id="job_1", tool="t", status="completed")
    )
    assert line == (
        f"time={stamp(created)} level=info logger=conveyor.engine action=job.finished "
        'msg="job finished" job_id=job_1 tool=t status=completed'
    )


def test_values_that_are_not_plain_words_are_quoted_and_none_is_left_out() -> None:
    line = LogfmtFormatter().format(
        record("done", 1_790_000_000, url="http://x/?a=b", note='say "hi"', empty="", count=3, gone=None)
    )
    assert line.endswith('msg=done url="http://x/?a=b" note="say \\"hi\\"" empty="" count=3')


def test_the_time_stamp_follows_the_clock_from_one_second_to_the_next() -> None:
    formatter = LogfmtFormatter()
    first, second = 1_790_000_000.9, 1_790_000_001.1
    assert formatter.format(record("a", first)).startswith(f"time={stamp(first)} ")
    assert formatter.format(record("b", second)).startswith(f"time={stamp(second)} ")
    assert stamp(first) != stamp(second)


def test_a_logger_name_that_is_not_a_plain_word_is_quoted() -> None:
    made = logging.getLogger("my toolkit").makeRecord(
        "my toolkit", logging.WARNING, __file__, 1, "hi", (), None
    )
    assert ' level=warning logger="my toolkit" msg=hi' in LogfmtFormatter().format(made)
