"""The result of one check, and the exit status of a run: the one result type of the project.

A `Result` is the verdict of a deterministic check (a value within its float budget or not), of
a statistical one (a statistic within its threshold at a stated false-fail rate, with the
discrepancy it detects at a stated power: `ddpm_verify.stats`), of a property test of the
suite, or a convention line. `check()` raises `CheckFailed` (an AssertionError carrying the
result) when it failed, which is how tests assert.

Outcomes, kept apart everywhere (table, JSON, pytest, exit status):

- ``pass``: every value within its float budget;
- ``note``: within the budget of an approximation the target declares (the tanh normal CDF),
  with its size; or an option of the target that changes nothing the checks test;
- ``fail``: a wrong value, NaN or inf where the math is finite, or an output of the wrong
  shape or dtype; every failing input is listed;
- ``error``: the target raised on valid input (one line: exception, operation, input);
- ``skip``: the target does not provide the operation, or the check does not apply (reason);
- ``convention``: a choice the math leaves free, declared by the target or detected by its
  adapter, under which the other checks ran (not a verdict).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

STATUSES = ("pass", "note", "fail", "error", "skip", "convention")
FAILING = ("fail", "error")


@dataclass
class Failure:
    """One value beyond its budget: where (timestep, index in the compared array, and the part of
    the check), what the target gave, what the reference gives, and the tolerance there."""

    t: int | str
    index: tuple
    got: float
    expected: float
    tolerance: float
    part: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["index"] = list(self.index)
        return {k: (_finite_or_text(v) if isinstance(v, float) else v) for k, v in d.items()}


def _finite_or_text(v: float):
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else "inf" if v > 0 else "-inf")


def t_list(ts, limit: int = 12) -> str:
    """'1..3, 100, 500' (runs of consecutive timesteps as ranges; at most `limit` items, then '...')."""
    items, ts = [], list(ts)
    i = 0
    while i < len(ts):
        j = i
        while j + 1 < len(ts) and ts[j + 1] == ts[j] + 1:
            j += 1
        items.append(str(ts[i]) if j == i else f"{ts[i]}, {ts[j]}" if j == i + 1 else f"{ts[i]}..{ts[j]}")
        i = j + 1
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


@dataclass
class Result:
    """One check of one target (or one convention line). `timesteps` are the distinct t the check
    compared, `failed_timesteps` those with a value beyond budget; `values` counts the compared
    values and `failures` lists every failing one. `traceback` holds the target's traceback for
    an ``error`` (shown only on request)."""

    name: str
    status: str
    worst_error: float = float("nan")
    tolerance: float = float("nan")
    detail: str = ""
    operation: str = ""
    timesteps: list = field(default_factory=list)
    failed_timesteps: list = field(default_factory=list)
    values: int = 0
    failures: list[Failure] = field(default_factory=list)
    traceback: str = ""
    false_fail_rate: float = float("nan")        # statistical checks: the stated rate,
    power: float = float("nan")                  # the stated power,
    detectable: float = float("nan")             # and the discrepancy detected with that power
    group: str = ""                              # what the check belongs to (a property module)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is none of {', '.join(STATUSES)}")

    @property
    def passed(self) -> bool:
        return self.status not in FAILING

    @property
    def statistical(self) -> bool:
        return self.false_fail_rate == self.false_fail_rate

    # a statistical check's statistic, threshold and sample size under their own names
    statistic = property(lambda self: self.worst_error)
    threshold = property(lambda self: self.tolerance)
    n = property(lambda self: self.values)

    def __str__(self) -> str:
        if not self.statistical:
            return f"{self.name}: {self.status}{'; ' + self.detail if self.detail else ''}"
        return (f"{self.name}: {'pass' if self.passed else 'FAIL'}; statistic {self.statistic:.4g} "
                f"vs threshold {self.threshold:.4g} (n={self.n}, false-fail rate {self.false_fail_rate:.1e}; "
                f"detects {self.detectable:.3g} with power {self.power:.2f})"
                f"{'; ' + self.detail if self.detail else ''}")

    def check(self) -> Result:
        """The result itself when it passed; raises CheckFailed (an AssertionError) otherwise."""
        if not self.passed:
            raise CheckFailed(self)
        return self

    @property
    def budget_used(self) -> float:
        return self.worst_error / self.tolerance if self.tolerance > 0 else float("nan")

    @property
    def where_failed(self) -> str:
        """'t = 1, 2 (2 of 7 timesteps; 12 of 224 values)' for a failure, '' otherwise."""
        if self.status != "fail" or not self.failures:
            return ""
        counts = f"{len(self.failures)} of {self.values} values"
        if not self.failed_timesteps:
            return counts
        return (f"t = {t_list(self.failed_timesteps)} ({len(self.failed_timesteps)} of {len(self.timesteps)} "
                f"timesteps; {counts})")

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "operation", "status", "worst_error", "tolerance")}
        d["budget_used"] = self.budget_used
        d = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
        d.update(detail=self.detail, where_failed=self.where_failed, timesteps=list(self.timesteps),
                 failed_timesteps=list(self.failed_timesteps), values=self.values,
                 failures=[f.as_dict() for f in self.failures])
        if self.statistical:
            d.update(false_fail_rate=self.false_fail_rate, power=self.power, detectable=_finite_or_text(self.detectable))
        if self.group:
            d["group"] = self.group
        if self.traceback:
            d["traceback"] = self.traceback
        return d


class CheckFailed(AssertionError):
    """A failed check, raised by `Result.check()`; `result` holds the whole verdict."""

    def __init__(self, result: Result):
        super().__init__(str(result))
        self.result = result


def exit_status(results: list[Result]) -> int:
    """0 when no check failed or errored, 1 otherwise."""
    return 1 if any(r.status in FAILING for r in results) else 0


def counts(results: list[Result]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in STATUSES}
