"""Worst error of every `reference` function against 50-digit mpmath, over all schedules and T.

Usage (from the repository root):  python3 benchmarks/precision.py [--strict]

Runs the checks registered in properties/test_precision.py (the same inputs, exact values from
properties/_mp.py, and error measures as the tests) and prints, per function, the worst error
over its cases, where it occurred, and whether it is within the bound (1e-12).
Measures: "elem" = relative error per element, "norm" = normwise relative error per row
(max|computed - exact| / max|exact| over the data dimension). --strict exits 1 if any check fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from properties import _mp  # noqa: E402
from properties.test_precision import CHECKS  # noqa: E402


def main(argv: list[str]) -> int:
    start = time.perf_counter()
    rows = []
    for name, (cases, fn) in CHECKS.items():
        worst = _mp.worst_of(*(fn(case) for case in cases))
        rows.append((name, worst, len(cases)))
    elapsed = time.perf_counter() - start

    header = f"{'function':<44} {'worst err':>10} {'meas':<4} {'ok':<4} {'case':<20} where"
    print(f"Precision against mpmath at {_mp.DPS} digits; bound {_mp.BOUND:.0e}")
    print(header)
    print("-" * len(header))
    for name, m, n in rows:
        meas = "norm" if m.measure.startswith("normwise") else "elem"
        where = m.where if len(m.where) <= 90 else m.where[:87] + "..."
        print(f"{name:<44} {m.error:>10.2e} {meas:<4} {'ok' if m.ok else 'FAIL':<4} {m.case:<20} {where}")
    failed = [m for _, m, _ in rows if not m.ok]
    print(f"\n{len(rows)} functions, {sum(n for *_, n in rows)} cases, {elapsed:.1f} s; "
          f"{len(failed)} over the bound")
    for m in failed:
        print("  " + m.message())
    return 1 if failed and "--strict" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
