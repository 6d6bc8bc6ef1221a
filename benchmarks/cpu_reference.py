"""How fast this machine runs Python right now: a fixed pure-Python workload, timed.

The benchmark machine is shared: the same loop takes 0.78 s or 1.08 s minutes apart (host contention, clock
changes), and every figure of a benchmark moves with it. The scripts print this reference beside their figures so
runs can be compared: a figure measured with a reference of 0.1 s is on a machine about 1.5× slower than one of
0.066 s. ``parallel`` runs the same loop in one process per core at once: when it is much slower than the loop
alone, the cores share a physical core (or the host is busy) and every concurrent figure (the admin pages with 8
clients, a render beside its validation) pays for it.

``file_creation_ms`` does the same for the disk: creating files is what a first render's validation mirror and
the git floor spend most of their time on, and on this machine it moved between 0.08 and 1.2 ms per file within
one session (a folder of the same file system was fast or slow depending on how many files had been created and
deleted near it before).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor


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


def parallel_loop_seconds(processes: int | None = None) -> float:
    """The slowest of ``processes`` (default: one per core) simultaneous runs of python_loop_seconds(), in
    seconds of CPU time each."""
    processes = processes or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return max(pool.map(python_loop_seconds, [3] * processes))


def reference() -> dict:
    """{"single_s": the loop alone, "parallel_s": the loop on every core at once}: the machine's speed now."""
    return {"single_s": python_loop_seconds(), "parallel_s": parallel_loop_seconds()}


def file_creation_ms(directory: str | None = None, folders: int = 250, files_per_folder: int = 8) -> float:
    """Milliseconds per 1,000 files to create ``folders`` folders of ``files_per_folder`` files of 4 KiB each (a
    project folder of a rendered tree) in a new folder under ``directory`` (default: tempfile.gettempdir(), where
    the benchmarks put their repositories), wall-clock time (the file system's work is kernel time). The files are
    removed again."""
    root = tempfile.mkdtemp(prefix="portal-file-reference-", dir=directory)
    data = b"x" * 4096
    try:
        started = time.perf_counter()
        for folder in range(folders):
            path = os.path.join(root, f"project-{folder}")
            os.mkdir(path)
            for number in range(files_per_folder):
                with open(os.path.join(path, f"file-{number}.yaml"), "wb") as handle:
                    handle.write(data)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return round(seconds * 1000 * 1000 / (folders * files_per_folder), 1)


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all cores since boot, from /proc/stat's "cpu" line (idle + iowait count as idle)."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)


def wait_idle(limit_s: float = 60.0, window_s: float = 1.0, busy_max: float = 0.15) -> float:
    """Wait until the cores were at most ``busy_max`` busy (fraction of all cores' time, /proc/stat) over one
    ``window_s`` window, at most ``limit_s`` seconds: a figure is measured on an idle machine, not beside what the
    benchmark itself left running (a PostgreSQL checkpoint or autovacuum, a worker's start-up, disk write-back).
    Returns the busy fraction of the last window (when ``limit_s`` ran out, above ``busy_max``)."""
    started = time.monotonic()
    while True:
        idle_before, total_before = _cpu_times()
        time.sleep(window_s)
        idle_after, total_after = _cpu_times()
        busy = 1 - (idle_after - idle_before) / max(total_after - total_before, 1)
        if busy <= busy_max or time.monotonic() - started >= limit_s:
            return round(busy, 3)


def settle() -> float:
    """Before a timed step: what earlier steps wrote reaches the disk (os.sync; otherwise the kernel writes it back
    during the step: it swung the git floor between 5.9 and 11 s at 5,000 projects and a worker's one-project change
    between 0.7 and 1.2 s) and the cores are idle (wait_idle). Returns wait_idle's busy fraction."""
    os.sync()
    return wait_idle()


def describe(figures: dict) -> str:
    """reference()'s figures in words."""
    return f"{figures['single_s']} s alone, {figures['parallel_s']} s on every core at once"


if __name__ == "__main__":
    print(describe(reference()))
    print(f"creating files in {tempfile.gettempdir()}: {file_creation_ms()} ms per 1,000")
