"""Time sources of the checker; tests inject a fake one so no test sleeps for real.

Two clocks, two jobs: `monotonic()` is the ONE clock every lease judgement uses (renewals observed by this
process, deadlines, time budgets); `now()` is wall-clock epoch seconds, used only for what is stored in the
table for display, for timeouts between checker runs and for the nodes' clock-skew metric.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock epoch seconds: display, table timestamps, skew. Never a lease judgement."""
        ...

    def monotonic(self) -> float:
        """This process's monotonic seconds: lease tracking and time budgets."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
