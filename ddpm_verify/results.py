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
from dataclasses import asdict, dataclass, field, replace

import numpy as np

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
        return {k: (finite_or_text(v) if isinstance(v, float) else v) for k, v in d.items()}


def finite_or_text(v: float):
    """A float as itself, or "nan", "inf", "-inf" (JSON has no non-finite numbers)."""
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
            d.update(false_fail_rate=self.false_fail_rate, power=self.power, detectable=finite_or_text(self.detectable))
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


def _ratio(err: np.ndarray, tol: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(err == 0, 0.0, np.where(tol > 0, err / tol, np.inf))


def _failures(beyond: np.ndarray, got, want, tol, t, part: str) -> list[Failure]:
    """A `Failure` per True of `beyond`, in row-major order; `t` one label or the timestep of each value."""
    if beyond.ndim == 0:
        return [Failure(t if isinstance(t, str) else int(t), (), float(got), float(want), float(tol), part)] if beyond else []
    where = np.nonzero(beyond)
    ts = [t] * where[0].size if isinstance(t, str) else t[where].astype(np.int64).tolist()
    return [Failure(*row, part) for row in zip(ts, zip(*(w.tolist() for w in where)), got[where].tolist(),
                                               want[where].tolist(), tol[where].tolist())]


def compare(got, want, tol, t, approx=None, approx_label: str = "", part: str = "") -> Result:
    """Elementwise |got - want| <= tol, every failing value listed.

    `t`: the timestep of each row (first axis), or one label for all values (e.g. "t=T"). A
    non-finite reference value must be matched exactly; a non-finite `got` where the reference
    is finite fails. With `approx` (the extra error an approximation by design may add): values
    within tol + approx but beyond tol make a ``note`` naming `approx_label` and the size.
    """
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"compare: got {got.shape} and want {want.shape} differ (a bug of the check)")
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), want.shape)
    approx = np.zeros(want.shape) if approx is None else np.broadcast_to(np.asarray(approx, np.float64), want.shape)
    labelled = isinstance(t, str)
    row_t = None if labelled else np.broadcast_to(np.asarray(t).reshape((-1,) + (1,) * (want.ndim - 1)), want.shape)
    with np.errstate(invalid="ignore"):
        mismatch = (~np.isfinite(got) | ~np.isfinite(want)) & ~(got == want)
        err = np.where(mismatch, np.inf, np.where(got == want, 0.0, np.abs(got - want)))
    ratio, ratio_all = _ratio(err, tol), _ratio(err, tol + approx)
    beyond_all = mismatch | (ratio_all > 1)

    def at(i) -> str:
        where = t if labelled else f"t={row_t[i]}"
        return f"{where}, index {tuple(int(k) for k in i)}" if want.ndim else where

    failures = _failures(beyond_all, got, want, tol + approx, t if labelled else row_t, part)
    timesteps = [] if labelled else [int(k) for k in np.unique(row_t)]
    failed_t = [] if labelled else [int(k) for k in np.unique(row_t[beyond_all])]
    result = Result(part, "pass", timesteps=timesteps, failed_timesteps=failed_t, values=int(want.size),
                    failures=failures)
    if failures:
        bad = np.argwhere(mismatch)
        i = tuple(bad[0]) if bad.size else np.unravel_index(np.argmax(np.where(beyond_all, ratio_all, -1)), want.shape)
        result.status, result.worst_error, result.tolerance = "fail", float(err[i]), float(tol[i] + approx[i])
        result.detail = (f"{got[i]} where the math gives {want[i]:.6g} ({at(i)})" if mismatch[i] else
                         f"worst at {at(i)}: got {got[i]!r}, reference {want[i]!r}, |difference| "
                         f"{err[i]:.3e} > tolerance {tol[i] + approx[i]:.3e}")
        return result
    i = np.unravel_index(np.argmax(ratio), want.shape) if want.size else ()
    if not want.size:
        return result
    rel = err[i] / abs(want[i]) if want[i] else err[i]
    result.worst_error, result.tolerance = float(err[i]), float(tol[i])
    result.detail = f"worst at {at(i)}: got {got[i]:.9g}, reference {want[i]:.9g} (relative {rel:.2e})"
    beyond = ratio > 1
    if beyond.any():
        result.status = "note"
        result.detail = (f"precision note: {approx_label}: error up to {np.max(err[beyond]):.3g} beyond the float "
                         f"budget at {int(beyond.sum())} of {beyond.size} values, at most {np.max(ratio_all):.1%} "
                         f"of the approximation's budget; {result.detail}")
    return result


def worst(*parts: Result, name: str = "") -> Result:
    """One result for several comparisons (their `name` is the part): fail if any part fails
    (the part with the largest error relative to its budget shown), else note, else pass; every
    part's failures kept, timesteps and value counts merged."""
    for status in ("fail", "note", "pass"):
        of = [r for r in parts if r.status == status]
        if of:
            break
    else:
        return Result(name, "skip", detail="; ".join(f"{r.name}: {r.detail}" for r in parts))
    key = max(of, key=lambda r: r.budget_used if r.budget_used == r.budget_used else -1)
    return Result(name, status, key.worst_error, key.tolerance, f"{key.name}: {key.detail}",
                  timesteps=sorted({k for r in parts for k in r.timesteps}),
                  failed_timesteps=sorted({k for r in parts for k in r.failed_timesteps}),
                  values=sum(r.values for r in parts), failures=[f for r in parts for f in r.failures])


def from_verdict(run, samples=None, name: str = "") -> Result:
    """A statistical check (ddpm_verify.stats) as a result: its statistic against its threshold;
    non-finite `samples` (where the math is finite) fail before any test."""
    if samples is not None and not np.all(np.isfinite(samples)):
        bad = int(np.sum(~np.isfinite(samples)))
        return Result(name, "fail", float("inf"), values=int(np.size(samples)),
                      detail=f"{bad} of {np.size(samples)} values are NaN or inf where the math is finite")
    try:
        v = run()
    except CheckFailed as exc:
        v = exc.result
    return replace(v, name=name, detail=str(v))


def skip(reason: str) -> Result:
    return Result("", "skip", detail=reason)


def exit_status(results: list[Result]) -> int:
    """0 when no check failed or errored, 1 otherwise."""
    return 1 if any(r.status in FAILING for r in results) else 0


def counts(results: list[Result]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in STATUSES}
