"""Drill only: a node whose wall clock is off by DRILL_CLOCK_OFFSET_SECONDS (e.g. -5 or +5).

The drill puts this directory first on PYTHONPATH of one node's processes (its agent and, inherited, its S3
server), so Python's `site` imports it at start-up. It shifts the wall clock every Python-level reader uses:
time.time(), time.time_ns() and time.clock_gettime(CLOCK_REALTIME) (and the _ns form); the monotonic clocks are
untouched, as on a machine whose NTP is off. The product code has no hook for this: it reads the clock as usual.

Not shifted: datetime.now()/utcnow() (C code reading the clock directly), file timestamps set by the kernel, and
non-Python children. libfaketime (LD_PRELOAD) would shift those too, but Debian's 0.9.10 breaks Python 3.11's
time.sleep() (clock_nanosleep with TIMER_ABSTIME fails with EINVAL), so it cannot run the agent.
"""

import os
import time

_OFFSET = float(os.environ.get("DRILL_CLOCK_OFFSET_SECONDS") or 0)

if _OFFSET:
    _time, _time_ns = time.time, time.time_ns
    _clock_gettime, _clock_gettime_ns = time.clock_gettime, time.clock_gettime_ns
    _OFFSET_NS = int(_OFFSET * 1_000_000_000)

    def _skewed_time() -> float:
        return _time() + _OFFSET

    def _skewed_time_ns() -> int:
        return _time_ns() + _OFFSET_NS

    def _skewed_clock_gettime(clock_id: int) -> float:
        value = _clock_gettime(clock_id)
        return value + _OFFSET if clock_id == time.CLOCK_REALTIME else value

    def _skewed_clock_gettime_ns(clock_id: int) -> int:
        value = _clock_gettime_ns(clock_id)
        return value + _OFFSET_NS if clock_id == time.CLOCK_REALTIME else value

    time.time = _skewed_time
    time.time_ns = _skewed_time_ns
    time.clock_gettime = _skewed_clock_gettime
    time.clock_gettime_ns = _skewed_clock_gettime_ns
