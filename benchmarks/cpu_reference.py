"""How fast this machine runs Python right now: a fixed pure-Python workload, timed.

The benchmark machine is shared: the same loop takes 0.78 s or 1.08 s minutes apart (host contention, clock
changes), and every figure of a benchmark moves with it. The scripts print this reference beside their figures so
runs can be compared: a figure measured with a reference of 1.0 s is on a machine about 1.3× slower than one of
0.78 s.
"""

from __future__ import annotations

import time


def _workload() -> int:
    total = 0
    for i in range(2_000_000):
        total += i % 7
    return total


def python_loop_seconds(rounds: int = 3) -> float:
    """The fastest of ``rounds`` runs of a fixed loop of 2,000,000 iterations, in seconds of CPU time
    (time.process_time: what the machine gives this process, not what waits for it)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        _workload()
        best = min(best, time.process_time() - started)
    return round(best, 3)


if __name__ == "__main__":
    print(python_loop_seconds())
