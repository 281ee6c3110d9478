"""Measuring rates on a busy machine: paired, interleaved rounds and medians.

A figure is always subject/baseline measured in the same process and the
same moments: each round times the baseline and the subject back to back
(alternating which goes first), the round's ratio is taken, and the median
over rounds is reported. Load from other processes then hits both sides of
each pair and mostly cancels out of the ratio.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    """How long to measure: full runs for the table, tiny ones for the smoke test."""

    rounds: int
    sample_seconds: float       # one timed sample of one side of a pair
    thread_seconds: float       # one timed sample of a threaded run
    memory_ops: int             # unwraps for the memory check (vs memory_ops // 100)
    http_seconds: int           # wrk duration per round
    http_rounds: int
    smoke: bool = False


FULL = Budget(rounds=7, sample_seconds=0.15, thread_seconds=0.5, memory_ops=100_000, http_seconds=5, http_rounds=3)
SMOKE = Budget(rounds=2, sample_seconds=0.01, thread_seconds=0.05, memory_ops=2_000, http_seconds=1, http_rounds=1,
               smoke=True)


def run_for(fn, n: int) -> tuple[float, float]:
    """Run fn() n times: (wall seconds, this thread's CPU seconds)."""
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        fn()
    return time.perf_counter() - w0, time.thread_time() - c0


def calibrate(fn, seconds: float) -> int:
    """How many calls of fn() take about `seconds` (at least 1)."""
    n = 1
    while True:
        wall, _ = run_for(fn, n)
        if wall >= seconds / 4 or n >= 1 << 24:
            return max(1, int(n * seconds / max(wall, 1e-9)))
        n *= 4


@dataclass
class Paired:
    """Result of a paired comparison; rates in operations per second.

    The figure is the ratio of rates per CPU-second of the measuring thread:
    on a shared machine wall time also counts the moments another process
    held the core, which is noise for a single-threaded code path that does
    not block (warm caches: no I/O). The wall-clock ratio (median over
    adjacent block pairs) is kept beside it; on an idle machine they agree.
    """

    cpu_ratios: list[float] = field(default_factory=list)      # per round, thread CPU time
    block_ratios: list[float] = field(default_factory=list)    # adjacent block pairs, wall clock
    subject_cpu_rates: list[float] = field(default_factory=list)   # per round
    baseline_cpu_rates: list[float] = field(default_factory=list)  # per round
    subject_rates: list[float] = field(default_factory=list)   # per block, wall clock
    baseline_rates: list[float] = field(default_factory=list)  # per block, wall clock

    @property
    def ratio(self) -> float:
        return statistics.median(self.cpu_ratios)

    @property
    def wall_ratio(self) -> float:
        return statistics.median(self.block_ratios)

    @property
    def subject_rate(self) -> float:
        return statistics.median(self.subject_cpu_rates)

    @property
    def baseline_rate(self) -> float:
        return statistics.median(self.baseline_cpu_rates)

    def detail(self) -> dict:
        return {
            "subject_per_cpu_s": round(self.subject_rate, 1),
            "baseline_per_cpu_s": round(self.baseline_rate, 1),
            "cpu_ratio_rounds": [round(r, 4) for r in self.cpu_ratios],
            "wall_ratio": round(self.wall_ratio, 4),
            "subject_per_s_wall": round(statistics.median(self.subject_rates), 1),
            "baseline_per_s_wall": round(statistics.median(self.baseline_rates), 1),
            "block_pairs": len(self.block_ratios),
        }


def paired(baseline, subject, budget: Budget, block_seconds: float = 0.01) -> Paired:
    """Rounds of baseline() vs subject(), each called in a loop.

    Within a round the two alternate in short blocks (which goes first
    alternating too), so load from other processes lands on both sides.
    """
    baseline(), subject()  # warm both (caches, lazy imports)
    nb = calibrate(baseline, block_seconds)
    ns = calibrate(subject, block_seconds)
    blocks = max(1, round(budget.sample_seconds / block_seconds))
    out = Paired()
    for r in range(budget.rounds):
        bc = sc = 0.0
        for j in range(blocks):
            if (r + j) % 2 == 0:
                bwj, bcj = run_for(baseline, nb)
                swj, scj = run_for(subject, ns)
            else:
                swj, scj = run_for(subject, ns)
                bwj, bcj = run_for(baseline, nb)
            out.baseline_rates.append(nb / bwj)
            out.subject_rates.append(ns / swj)
            out.block_ratios.append((ns / swj) / (nb / bwj))
            bc, sc = bc + bcj, sc + scj
        b_rate, s_rate = nb * blocks / max(bc, 1e-9), ns * blocks / max(sc, 1e-9)
        out.baseline_cpu_rates.append(b_rate)
        out.subject_cpu_rates.append(s_rate)
        out.cpu_ratios.append(s_rate / b_rate)
    return out


def per_call_seconds(fn, budget: Budget) -> float:
    """Median CPU seconds (this thread) per call of fn() over the budget's rounds."""
    fn()
    n = calibrate(fn, budget.sample_seconds)
    return statistics.median(run_for(fn, n)[1] / n for _ in range(budget.rounds))


def threaded_rate(fn, threads: int, seconds: float) -> float:
    """Calls per second of fn() from `threads` threads running for `seconds`."""
    stop = threading.Event()
    counts = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        start.wait()
        n = 0
        try:
            while not stop.is_set():
                fn()
                n += 1
        except BaseException as e:  # surfaced below: a failing call must fail the bench
            errors.append(e)
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts) / elapsed
