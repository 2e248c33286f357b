"""Plain progress lines (`segpipe.progress.PlainProgress`) for evaluation and prediction off a terminal."""

from __future__ import annotations

import io
import re

from segpipe.progress import PlainProgress, RichProgress, format_duration, progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_the_interval_with_rate_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress("predict", 40, stream=out, interval=10, clock=clock)
    for done in range(1, 41):
        clock.now += 1.0  # one image a second
        bar.update(done)
    bar.close()
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\S+ \S+ predict started: 40 to do", lines[0])
    # a line every 10 s (not every image), each with the count, the rate and the time left
    body = lines[1:-1]
    assert [re.search(r"predict (\d+)/40", line).group(1) for line in body] == ["10", "20", "30", "40"]
    assert body[0].endswith("predict 10/40 (25%) | 1.0 img/s | ETA 30s"), body[0]
    assert re.fullmatch(r"\S+ \S+ predict done: 40/40 in 40s", lines[-1])


def test_terminal_gets_a_bar_and_a_pipe_gets_lines() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress("evaluate", 3, stream=io.StringIO()), PlainProgress)
    bar = progress("evaluate", 3, stream=Tty())
    assert isinstance(bar, RichProgress)
    bar.close()


def test_durations() -> None:
    assert [format_duration(s) for s in (None, -1, 12.4, 200, 7500)] == ["?", "?", "12s", "3m20s", "2h05m"]
