"""Progress of long work: bars with counts, rates and ETAs on a terminal, plain lines elsewhere.

    with ProgressDisplay() as progress:
        task = progress.add("seed", total=10_000, unit="issues")
        progress.update(task, 4_000)
        progress.finish(task, "seed: done in 3.1 s")

On a terminal, rich draws one bar per running task (done/total, rate, ETA)
below the lines printed meanwhile (`print`). Elsewhere (a pipe, a log file,
CI) nothing is drawn: printed lines go out as they are, and a task still
running after `plain_every_s` gets one plain progress line per interval, so
a log shows that long work is alive without filling up with bars.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

__all__ = [
    "PLAIN_EVERY_S", "ProgressDisplay", "TaskID", "format_duration", "progress_line",
    "progress_text",
]

# Seconds between plain progress lines of one task when not on a terminal.
PLAIN_EVERY_S = 10.0


def format_duration(seconds: float) -> str:
    """`0.4s`, `8s`, `45s`, `3m05s`, `1h02m`: short enough for a progress line."""
    if seconds < 9.95 and seconds != int(seconds):
        return f"{max(0.0, seconds):.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def count_part(done: float, total: float | None, unit: str, *, estimated: bool = False) -> str:
    """`12,000/~50,000 rows`: `~` when the total is an estimate, no total when unknown
    (or when past an estimate: more rows keep coming than the planner guessed)."""
    text = f"{int(done):,}"
    if total is not None and not (estimated and done > total):
        text += f"/{'~' if estimated else ''}{int(total):,}"
    return f"{text} {unit}".rstrip()


def rate_part(per_s: float | None, unit: str) -> str:
    """`3,400 rows/s`, or nothing while unknown."""
    if per_s is None:
        return ""
    return f"{per_s:,.0f} {unit}/s" if unit else f"{per_s:,.0f}/s"


def eta_part(done: float, total: float | None, per_s: float | None) -> str:
    """`ETA 1m05s`, or nothing while unknown (no rate, no total, or past it)."""
    if total is None or not per_s or done >= total:
        return ""
    return f"ETA {format_duration(math.ceil((total - done) / per_s))}"


def progress_line(done: float, *, total: float | None, unit: str, per_s: float | None,
                  estimated: bool = False) -> str:
    """`4,000/10,000 issues, 1,200 issues/s, ETA 5s`: a bar's texts as one line (the
    plain form of a bar, and the progress lines of a worker's log)."""
    if estimated and total is not None and done > total:
        total = None
    parts = [count_part(done, total, unit, estimated=estimated), rate_part(per_s, unit),
             eta_part(done, total, per_s)]
    return ", ".join(part for part in parts if part)


def speed(task: Task) -> float | None:
    """Units per second: rich's, over its recent updates; before it has two, the
    average since the bar was added (from the `completed` it was added with), so
    that work reported in a few big steps has a rate and an ETA from its first step."""
    recent = task.finished_speed or task.speed
    if recent is not None:
        return recent
    done = task.completed - task.fields.get("done_before", 0.0)
    elapsed = task.elapsed
    return done / elapsed if done > 0 and elapsed else None


def count_text(task: Task) -> str:
    return count_part(task.completed, task.total, task.fields.get("unit", ""),
                      estimated=bool(task.fields.get("estimated")))


def rate_text(task: Task) -> str:
    return rate_part(speed(task), task.fields.get("unit", ""))


def eta_text(task: Task) -> str:
    return "" if task.finished else eta_part(task.completed, task.total, speed(task))


def progress_text(task: Task) -> str:
    """The plain form of a bar: `seed: 4,000/10,000 issues, 1,200 issues/s, ETA 5s`."""
    return f"{task.description}: " + progress_line(
        task.completed, total=task.total, unit=task.fields.get("unit", ""), per_s=speed(task),
        estimated=bool(task.fields.get("estimated")))


class _Column(ProgressColumn):
    """One of the texts above as a rich column."""

    def __init__(self, text: Callable[[Task], str]) -> None:
        super().__init__()
        self._text = text

    def render(self, task: Task) -> Text:
        return Text(self._text(task))


class ProgressDisplay:
    """Bars for the tasks of one command; see the module docstring."""

    def __init__(
        self,
        *,
        file: TextIO | None = None,
        terminal: bool | None = None,
        plain_every_s: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = file if file is not None else sys.stdout
        console = Console(file=self._file, force_terminal=terminal)
        # A dumb terminal cannot redraw a bar in place.
        self.terminal = console.is_terminal and not console.is_dumb_terminal
        self._plain_every_s = plain_every_s
        self._clock = clock
        self._plain_due: dict[TaskID, float] = {}
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _Column(count_text),
            _Column(rate_text),
            _Column(eta_text),
            console=console,
            transient=True,
            disable=not self.terminal,
            get_time=clock,
        )

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def add(self, description: str, *, total: float | None, unit: str,
            estimated: bool = False, completed: int = 0) -> TaskID:
        """A new bar; `estimated`: `total` is a guess (shown with `~`); `completed`: done
        before the bar was added (work already under way), left out of its rate."""
        task = self._progress.add_task(description, total=total, completed=completed,
                                       unit=unit, estimated=estimated, done_before=completed)
        self._plain_due[task] = self._clock() + self._plain_every_s
        return task

    def update(self, task: TaskID, completed: float, *, total: float | None = None) -> None:
        """`completed` so far (and a new `total`); past an estimated total, the total
        becomes unknown rather than a bar stuck at 100% with an ETA of zero."""
        state = self._task(task)
        if total is not None and total != state.total:
            self._progress.update(task, total=total)
        if state.total is not None and state.fields.get("estimated") and completed > state.total:
            state.total = None  # rich's `update` cannot unset a total
        self._progress.update(task, completed=completed)
        if not self.terminal and self._clock() >= self._plain_due.get(task, float("inf")):
            self._plain_due[task] = self._clock() + self._plain_every_s
            self.print(progress_text(self._task(task)))

    def finish(self, task: TaskID, line: str | None = None) -> None:
        """Remove the bar; print `line` in its place."""
        self._progress.remove_task(task)
        self._plain_due.pop(task, None)
        if line is not None:
            self.print(line)

    def print(self, line: str) -> None:
        """One line above the bars, as it is (no markup: SQL has brackets)."""
        if self.terminal:
            self._progress.refresh()  # the bars drawn again below the line are current
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self._file, flush=True)

    def _task(self, task: TaskID) -> Task:
        return next(state for state in self._progress.tasks if state.id == task)
