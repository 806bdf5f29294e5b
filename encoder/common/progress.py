"""Progress of a long step: a tqdm bar on a terminal, a plain line every few seconds elsewhere.

tqdm alone rewrites one line with carriage returns, which a log file or a CI console keeps as one
unreadable line (or hides until the step ends); a job's log needs whole lines at a steady pace.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
    """Count work done out of ``total``.

    Args:
        total: units of work (sentences, items).
        desc: what is counted, printed first.
        every: seconds between two lines when ``stream`` is not a terminal (0: a line each update).
        stream: where to write (default ``sys.stderr``).
        clock: seconds now (``time.monotonic``; a test passes its own).
    """

    def __init__(self, total: int, desc: str, every: float = 30.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.every, self.clock = int(total), desc, float(every), clock
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.shown = 0
        self.start = self.last = clock()
        self.bar = None
        if _isatty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        self.shown = self.done
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = f", about {(self.total - self.done) / rate:.0f} s left" if rate > 0 and self.done < self.total else ""
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        print(f"{self.desc}: {self.done}/{self.total}{share} in {elapsed:.0f} s, {rate:.1f}/s{left}",
              file=self.stream, flush=True)

    def close(self) -> None:
        """The final count (a line when not on a terminal, unless the last line showed it)."""
        if self.bar is not None:
            self.bar.close()
        elif self.shown != self.done or self.done == 0:
            self._line(self.clock())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
