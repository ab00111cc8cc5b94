"""The report of a check run: a table on the terminal, the same data as JSON.

One row per check (status, worst error, tolerance, budget used, where it fails, detail), then
the target's conventions and the options that change nothing checked; a last line with the
verdict and the counts of each outcome. The JSON holds every failing input (timestep, index,
got, expected, tolerance) and, for errors, the target's traceback.
"""

from __future__ import annotations

import json

from . import __version__
from .results import FAILING, Result, counts, exit_status

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


def print_run(run, *, tracebacks: bool = False) -> None:
    """The run as a table: one row per check, or (a grouped run: the property suite) one row per
    group with its counts, then every failing or erroring check; then the verdict line."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=200)
    table = Table(title=f"{run.title}: {run.name} ({run.version})", caption=run.caption)
    if run.grouped:
        _group_rows(table, run.results)
    else:
        for col in ("check", "status", "worst error", "tolerance", "budget used", "fails at", "detail"):
            table.add_column(col, justify="right" if col in ("worst error", "tolerance", "budget used") else "left",
                             overflow="fold")
        for r in run.results:
            table.add_row(escape(r.name), f"[{COLOURS[r.status]}]{r.status}[/]", _number(r.worst_error, ".3g"),
                          _number(r.tolerance, ".3g"), _budget(r.budget_used), escape(r.where_failed), escape(r.detail))
    console.print(table)
    if run.grouped:
        for r in run.results:
            if r.status in FAILING:
                console.print(f"[{COLOURS[r.status]}]{r.status}[/] {escape(r.name)}: {escape(r.detail)}",
                              highlight=False)
    if tracebacks:
        for r in run.results:
            if r.traceback:
                console.print(f"\n{r.name} ({r.operation}): the target's traceback\n{r.traceback}", highlight=False,
                              markup=False)
    console.print(summary_line(run.results), highlight=False)


def _group_rows(table, results: list[Result]) -> None:
    from rich.markup import escape

    for col in ("group", "passed", "failed", "errored", "skipped"):
        table.add_column(col, justify="left" if col == "group" else "right")
    groups: dict[str, dict[str, int]] = {}
    for r in results:
        c = groups.setdefault(r.group, {s: 0 for s in ("pass", "note", "fail", "error", "skip", "convention")})
        c[r.status] += 1
    for group, c in sorted(groups.items()):
        colour = "red" if c["fail"] or c["error"] else "green"
        table.add_row(f"[{colour}]{escape(group)}[/]", str(c["pass"] + c["note"]), str(c["fail"]), str(c["error"]),
                      str(c["skip"]))


def payload(run) -> dict:
    return {"command": run.title, "target": run.name, "version": run.version, "ddpm_verify": __version__,
            "seed": run.seed, **run.facts, "declaration": run.declaration, "exit_status": exit_status(run.results),
            "counts": counts(run.results), "results": [r.as_dict() for r in run.results]}


def write_json(path, run) -> None:
    with open(path, "w") as fh:
        json.dump(payload(run), fh, indent=2, default=str)
