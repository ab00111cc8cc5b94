"""The ``ddpm-verify`` command line.

Exit status: 0 when every applicable property passes, 1 when any fails, 2 when the target
cannot be resolved or the usage is wrong (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .check import TargetError, run_suite

TARGET_HELP = ("reference, diffusers, diffusers[key=value,...], guided-diffusion, guided-diffusion[key=value,...] "
               "or package.module:attr")


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
    check.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    check.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    check.add_argument("--traceback", action="store_true", help="show the traceback of a target error")
    snapshot = sub.add_parser("snapshot", help="record TARGET's outputs on a fixed seeded battery to a JSON file",
                              description="Evaluate every deterministic operation TARGET provides on a fixed, "
                                          "seeded battery of inputs and write the outputs to FILE, for "
                                          "'ddpm-verify regress'. Exit 0: written; 2: TARGET or FILE unusable.")
    snapshot.add_argument("target", metavar="TARGET", help=TARGET_HELP.removeprefix("reference, "))
    snapshot.add_argument("-o", "--output", metavar="FILE", required=True, help="the snapshot file to write")
    regress = sub.add_parser("regress", help="compare TARGET's outputs with a snapshot; list what changed",
                             description="Recompute the outputs recorded in FILE with TARGET and list those "
                                         "that changed beyond float reordering noise. Exit 0: no change (new "
                                         "outputs aside); 1: a change; 2: TARGET or FILE unusable.")
    regress.add_argument("target", metavar="TARGET", help=TARGET_HELP.removeprefix("reference, "))
    regress.add_argument("snapshot", metavar="FILE", help="a file written by 'ddpm-verify snapshot'")
    from .model.commands import add_parsers
    add_parsers(sub)
    return parser


def _print_conformance(target, results) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ddpm-verify check: {target.name} ({target.version})")
    for col in ("property", "status", "worst error", "tolerance", "budget used", "detail"):
        table.add_column(col, justify="right" if col in ("worst error", "tolerance", "budget used") else "left")
    colour = {"pass": "green", "note": "cyan", "fail": "red", "skip": "yellow"}
    for r in results:
        table.add_row(r.name, f"[{colour[r.status]}]{r.status}[/]", f"{r.worst_error:.3g}", f"{r.tolerance:.3g}",
                      f"{r.budget_used:.1%}" if r.budget_used == r.budget_used else "", r.detail)
    console = Console(width=200)
    console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "note", "fail", "skip")}
    console.print(f"{'FAIL' if counts['fail'] else 'PASS'}: {counts['pass']} passed, {counts['note']} passed with "
                  f"a precision note, {counts['fail']} failed, {counts['skip']} skipped", highlight=False)


def _write_json(path, target, results) -> None:
    import json

    from .conformance import SEED
    payload = {"target": target.name, "version": target.version, "unit_roundoff": target.unit_roundoff,
               "seed": SEED, "results": [r.as_dict() for r in results]}
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2)


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
    if args.command in ("snapshot", "regress"):
        from .snapshot import command
        return command(args)
    if args.command in ("train", "verify-model"):
        from .model.commands import train_command, verify_command
        return train_command(args) if args.command == "train" else verify_command(args)
    from . import conformance
    from .targets import TargetError as BadTarget
    from .targets import resolve
    try:
        target = resolve(args.target)
        if target is None:
            outcome = run_suite(args.target)
        else:
            results = conformance.run(target)
    except (TargetError, BadTarget) as exc:
        if args.traceback:
            raise
        print(f"ddpm-verify: error: {exc}", file=sys.stderr)
        return 2
    if target is None:
        _print_summary(args.target, outcome)
        return 0 if outcome.total("failed") == 0 else 1
    _print_conformance(target, results)
    if args.json:
        _write_json(args.json, target, results)
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
