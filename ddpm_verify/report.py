"""The report of a check run: a table on the terminal, the same data as JSON.

One row per check (status, worst error, tolerance, budget used, where it fails, detail), then
the target's conventions and the options that change nothing checked; a last line with the
verdict and the counts of each outcome. The JSON holds every failing input (timestep, index,
got, expected, tolerance) and, for errors, the target's traceback.
"""

from __future__ import annotations

import json

from . import __version__
from .results import Result, counts, exit_status

COLOURS = {"pass": "green", "note": "cyan", "fail": "red", "error": "bold red", "skip": "yellow",
           "convention": "magenta"}


def summary_line(results: list[Result]) -> str:
    """'PASS: 18 passed, 1 with a note, 0 failed, 0 errored, 6 skipped; 2 conventions'."""
    c = counts(results)
    verdict = "FAIL" if exit_status(results) else "PASS"
    return (f"{verdict}: {c['pass']} passed, {c['note']} with a note, {c['fail']} failed, {c['error']} errored, "
            f"{c['skip']} skipped; {c['convention']} convention{'s' if c['convention'] != 1 else ''}")


def _number(x: float, fmt: str) -> str:
    return format(x, fmt) if x == x else ""


def _budget(used: float) -> str:
    """'12.3%', or '3.4e+05x' beyond ten times the budget."""
    return "" if used != used else f"{used:.1%}" if used < 10 else f"{used:.3g}x"


def print_table(target, results: list[Result], *, tracebacks: bool = False, title: str = "ddpm-verify check") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: {target.name} ({target.version})",
                  caption=f"data shape {target.data_shape}, unit roundoff {target.unit_roundoff:.3g}, "
                          f"T = {target.T}")
    for col in ("check", "status", "worst error", "tolerance", "budget used", "fails at", "detail"):
        table.add_column(col, justify="right" if col in ("worst error", "tolerance", "budget used") else "left",
                         overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{COLOURS[r.status]}]{r.status}[/]", _number(r.worst_error, ".3g"),
                      _number(r.tolerance, ".3g"), _budget(r.budget_used), r.where_failed, r.detail)
    console = Console(width=200)
    console.print(table)
    if tracebacks:
        for r in results:
            if r.traceback:
                console.print(f"\n{r.name} ({r.operation}): the target's traceback\n{r.traceback}", highlight=False,
                              markup=False)
    console.print(summary_line(results), highlight=False)


def payload(target, results: list[Result], seed: int) -> dict:
    return {"target": target.name, "version": target.version, "ddpm_verify": __version__, "seed": seed,
            "unit_roundoff": target.unit_roundoff, "data_shape": list(target.data_shape),
            "declaration": target.declaration(), "exit_status": exit_status(results), "counts": counts(results),
            "results": [r.as_dict() for r in results]}


def write_json(path, target, results: list[Result], seed: int) -> None:
    with open(path, "w") as fh:
        json.dump(payload(target, results, seed), fh, indent=2, default=str)
