"""Worst error of every `reference` function against 50-digit mpmath, over all schedules and T.

Usage:  python benchmarks/precision.py [--strict]

Runs the measurements of `ddpm_verify.precision` (the inputs, the exact values from
`ddpm_verify.highprec` and the error measures of properties/test_precision.py) and prints, per
function, the worst error over its cases, where it occurred, and whether it is within the bound
(1e-12). --strict exits 1 if any measurement is over the bound.
"""

from __future__ import annotations

import sys
import time

from ddpm_verify import highprec, precision


def main(argv: list[str]) -> int:
    start = time.perf_counter()
    rows = []
    for name, (cases, fn) in precision.MEASUREMENTS.items():
        rows.append((name, highprec.worst_of(*(fn(case) for case in cases)), len(cases)))
    elapsed = time.perf_counter() - start

    print(f"Precision against mpmath at {highprec.DPS} digits; bound {highprec.BOUND:.0e}")
    header = f"{'function':<44} {'worst err':>10} {'ok':<4} case, measure, where"
    print(header)
    print("-" * len(header))
    for name, r, _ in rows:
        case = r.name[len(name):].strip(" []")
        detail = r.detail if len(r.detail) <= 110 else r.detail[:107] + "..."
        print(f"{name:<44} {r.worst_error:>10.2e} {'ok' if r.passed else 'FAIL':<4} {case}: {detail}")
    failed = [r for _, r, _ in rows if not r.passed]
    print(f"\n{len(rows)} functions, {sum(n for *_, n in rows)} cases, {elapsed:.1f} s; {len(failed)} over the bound")
    for r in failed:
        print(f"  {r}")
    return 1 if failed and "--strict" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
