"""Worst error of every `reference` function against its 50-digit exact value, over all schedules
and T, and the time of the exact evaluations in each engine.

Usage:  python benchmarks/precision.py [--strict] [--engine arb|mpmath|both]

Runs the measurements of `ddpm_verify.precision` (the inputs, the exact values from
`ddpm_verify.highprec` and the error measures of properties/test_precision.py) and prints, per
function, the worst error over its cases, where it occurred, and whether it is within the bound
(1e-12). The exact values come from arb ball arithmetic (python-flint, the suite's engine) by
default; ``--engine both`` measures everything in arb and then in mpmath, in one process, and
prints the time ratio mpmath / arb and the largest difference between the errors the two
measured. --strict exits 1 if any measurement is over the bound.
"""

from __future__ import annotations

import argparse
import sys
import time

from ddpm_verify import highprec, precision


def measure_all(engine: str) -> tuple[list, float]:
    """[(name, worst Result, number of cases)] in `engine`, and the seconds it took."""
    precision.clear_caches()
    start = time.perf_counter()
    with highprec.engine(engine):
        rows = [(name, highprec.worst_of(*(fn(case) for case in cases)), len(cases))
                for name, (cases, fn) in precision.MEASUREMENTS.items()]
    return rows, time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 if a measurement is over the bound")
    parser.add_argument("--engine", choices=["arb", "mpmath", "both"], default="arb")
    args = parser.parse_args(argv)
    engines = ["arb", "mpmath"] if args.engine == "both" else [args.engine]
    runs = {engine: measure_all(engine) for engine in engines}
    rows, elapsed = runs[engines[0]]

    print(f"Precision against {highprec.DPS}-digit exact values ({engines[0]}); bound {highprec.BOUND:.0e}")
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
    if args.engine == "both":
        (arb_rows, arb_s), (mp_rows, mp_s) = runs["arb"], runs["mpmath"]
        gap = max(abs(a.worst_error - m.worst_error) for (_, a, _), (_, m, _) in zip(arb_rows, mp_rows))
        print(f"mpmath {mp_s:.1f} s, arb {arb_s:.1f} s: mpmath / arb = {mp_s / arb_s:.2f}; "
              f"largest difference of the worst errors measured: {gap:.2e}")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
