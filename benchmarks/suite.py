"""Wall time of the property suite, in parallel (pytest-xdist) and serially, from one run.

    python benchmarks/suite.py [--workers N] [--no-serial]

Runs `pytest properties/` under CI=true (the ci Hypothesis profile) in a fresh process with
`-n N` (default N = auto, one worker per core) and, unless --no-serial, again with
`-n 0`; prints each wall time, the number of tests, the ratio serial / parallel and each time
against the 90 s target. On a shared machine run nothing else meanwhile.

A virtual machine's speed drifts with its host's load (on the 2-core machine of the README, the
same suite took 78 to 135 s on different days), so the script also times a fixed probe before and
after the runs: 20 million numpy normals and a pure-Python loop of 5 million steps, the two kinds
of work the suite does most. Compare suite times only at similar probe times.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 90.0


def run_suite(workers: str) -> tuple[float, str]:
    """(wall seconds, pytest's closing line) of the suite with `-n workers`."""
    env = {**os.environ, "CI": "true"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "properties/", "-q", "-p", "no:cacheprovider",
                           "-n", workers],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    last = [ln for ln in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    return wall, (last[-1].strip("= ") if last else f"exit {proc.returncode}: {proc.stderr[-500:]}")


def host_probe() -> tuple[float, float]:
    """(seconds for 20 million numpy normals, seconds for a Python loop of 5 million steps), each
    the best of three: how fast this machine is right now."""
    import numpy as np

    rng, normals, loop = np.random.default_rng(0), [], []
    for _ in range(3):
        start = time.perf_counter()
        rng.standard_normal(20_000_000)
        normals.append(time.perf_counter() - start)
        start = time.perf_counter()
        total = 0
        for i in range(5_000_000):
            total += i & 7
        loop.append(time.perf_counter() - start)
    return min(normals), min(loop)


def _probe_line(when: str) -> str:
    normals, loop = host_probe()
    return f"host probe {when}: 20M normals {normals:.3f} s, 5M-step Python loop {loop:.3f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="auto", help="pytest-xdist workers (-n), default auto")
    parser.add_argument("--no-serial", action="store_true", help="skip the serial run")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; CI=true; target {TARGET_S:.0f} s")
    print(_probe_line("before"))
    parallel, line = run_suite(args.workers)
    print(f"-n {args.workers:<5} {parallel:7.1f} s  ({parallel / TARGET_S:.2f} x target)  {line}")
    if not args.no_serial:
        serial, line = run_suite("0")
        print(f"-n 0     {serial:7.1f} s  ({serial / TARGET_S:.2f} x target)  {line}")
        print(f"serial / parallel: {serial / parallel:.2f}")
    print(_probe_line("after"))


if __name__ == "__main__":
    main()
