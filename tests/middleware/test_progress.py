"""Progress display: bars with counts, rates and ETAs on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import re

from pgsift.middleware.progress import ProgressDisplay, format_duration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    """A clock the test moves: rates and ETAs come out exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.04, 3.14, 8, 45, 185, 3725, -1.5)] == [
        "0.0s", "3.1s", "8s", "45s", "3m05s", "1h02m", "0.0s"]


def test_a_terminal_gets_a_bar_with_count_rate_and_eta() -> None:
    out = io.StringIO()
    clock = Clock()
    with ProgressDisplay(file=out, terminal=True, clock=clock) as display:
        task = display.add("seed", total=10_000, unit="issues")
        display.update(task, 2_000)
        clock.now += 2.0
        display.update(task, 4_000)
        # A printed line goes above the bars, which are drawn again below it.
        display.print("a [bold] line of SQL: WHERE x = ANY($1)")
        screen = ANSI.sub("", out.getvalue())
        assert "a [bold] line of SQL: WHERE x = ANY($1)" in screen  # not taken as markup
        # 2,000 issues in 2 s: 1,000 issues/s, 6,000 to go.
        bar = screen.split("ANY($1)")[1]
        assert "seed" in bar and "4,000/10,000 issues" in bar
        assert "1,000 issues/s" in bar and "ETA 6s" in bar
        display.finish(task, "seed: done")
    assert "\rseed: done\n" in ANSI.sub("", out.getvalue())


def test_elsewhere_only_lines_and_a_plain_progress_line_now_and_then() -> None:
    out = io.StringIO()
    clock = Clock()
    with ProgressDisplay(file=out, clock=clock, plain_every_s=10.0) as display:
        assert not display.terminal  # a StringIO is no terminal
        task = display.add("build", total=50_000, unit="rows", estimated=True)
        display.update(task, 1_000)
        clock.now += 5.0
        display.update(task, 6_000)
        assert out.getvalue() == ""  # short work stays quiet
        clock.now += 5.0
        display.update(task, 11_000)
        display.finish(task, "built")
    assert out.getvalue().splitlines() == [
        "build: 11,000/~50,000 rows, 1,000 rows/s, ETA 39s",
        "built",
    ]


def test_past_an_estimated_total_the_total_is_unknown() -> None:
    out = io.StringIO()
    clock = Clock()
    with ProgressDisplay(file=out, clock=clock, plain_every_s=1.0) as display:
        task = display.add("build", total=100, unit="rows", estimated=True)
        display.update(task, 50)
        clock.now += 1.0
        display.update(task, 150)
    # No "150/~100" and no ETA of zero while rows keep coming.
    assert out.getvalue().splitlines() == ["build: 150 rows, 100 rows/s"]


def test_work_reported_in_big_steps_has_a_rate_and_eta_from_its_first_step() -> None:
    out = io.StringIO()
    clock = Clock()
    with ProgressDisplay(file=out, clock=clock, plain_every_s=2.0) as display:
        task = display.add("seed", total=10_000, unit="issues")
        clock.now += 2.5
        # One step of 5,000 in 2.5 s since the bar was added: 2,000/s, 5,000 to go.
        display.update(task, 5_000)
    assert out.getvalue().splitlines() == ["seed: 5,000/10,000 issues, 2,000 issues/s, ETA 3s"]


def test_work_done_before_the_bar_was_added_is_not_in_its_rate() -> None:
    out = io.StringIO()
    clock = Clock()
    with ProgressDisplay(file=out, clock=clock, plain_every_s=2.0) as display:
        # A build followed from the middle: 40,000 rows were done before the first look.
        task = display.add("build", total=100_000, unit="rows", estimated=True,
                           completed=40_000)
        display.update(task, 40_000)
        clock.now += 2.0
        display.update(task, 50_000)
    assert out.getvalue().splitlines() == ["build: 50,000/~100,000 rows, 5,000 rows/s, ETA 10s"]
