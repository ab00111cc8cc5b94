"""The ``ddpm-verify`` command line.

Exit status: 0 when every applicable property passes, 1 when any fails, 2 when the target
cannot be resolved or the usage is wrong (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .check import TargetError, run_suite


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddpm-verify",
        description="Verify diffusion-model (DDPM) mathematics against a float64 reference.")
    parser.add_argument("--version", action="version", version=f"ddpm-verify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="run the property suite against TARGET; print a pass/fail summary",
                           description="Run the property suite against TARGET and print a pass/fail "
                                       "summary per property module. Exit 0: all pass; 1: a property "
                                       "failed; 2: TARGET unknown or the suite cannot run.")
    check.add_argument("target", metavar="TARGET", help="what to check; built-in: reference")
    return parser


def _print_summary(target: str, outcome) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ddpm-verify check {target}")
    for col in ("property module", "passed", "failed", "skipped"):
        table.add_column(col, justify="left" if col == "property module" else "right")
    for module, counts in sorted(outcome.per_module.items()):
        status = "red" if counts["failed"] else "green"
        table.add_row(f"[{status}]{module}[/]", str(counts["passed"]), str(counts["failed"]),
                      str(counts["skipped"]))
    console = Console()
    console.print(table)
    verdict = "PASS" if outcome.total("failed") == 0 else "FAIL"
    console.print(f"{verdict}: {outcome.total('passed')} passed, {outcome.total('failed')} failed, "
                  f"{outcome.total('skipped')} skipped", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        outcome = run_suite(args.target)
    except TargetError as exc:
        print(f"ddpm-verify: error: {exc}", file=sys.stderr)
        return 2
    _print_summary(args.target, outcome)
    return 0 if outcome.total("failed") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
