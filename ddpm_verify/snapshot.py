"""Snapshots of a target's outputs, for regression testing of diffusion and loss code.

`record` evaluates every deterministic operation a target provides on fixed, seeded inputs
(the conformance battery: NumPy's default_rng streams are stable, so the inputs are the same
on every machine) and returns a JSON-ready snapshot. `compare` recomputes the outputs and
reports each one that moved beyond float reordering noise, so a changed implementation can be
checked against the old one's outputs, value by value, without a float64 truth to compare to.

Operations that draw noise are recorded with a fixed seed (`reverse_step`, `q_sample_random`,
`total_bpd`): given the seed they are deterministic.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

import numpy as np

import reference

from . import SEED, __version__
from .adapters.protocol import OPERATIONS, STRIDED_OPERATIONS
from .conformance import checked, strided
from .conformance.inputs import battery, grid_data, timesteps, x0_defined
from .conformance.likelihood import likelihood_inputs, total_bpd_model
from .conformance.reverse import model_inputs
from .errors import TargetError, TargetRaised, WrongOutput
from .results import finite_or_text
from .targets import resolve

FORMAT = "ddpm-verify-snapshot/2"
#: elements may move by this many unit roundoffs of (|old| + median |old| of the output); see `compare`
ULPS = 64
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class SnapshotError(Exception):
    """The snapshot file is missing, unreadable or not a snapshot, or cannot be written (exit 2)."""


# -- inputs: the checks' batteries, described ------------------------------------------------------

def _where(t) -> str:
    return f"t in {{{', '.join(str(k) for k in np.unique(t))}}}"


def _shape(target) -> str:
    return "x".join(map(str, target.data_shape))


def _forward(target):
    """battery: 8 rows per timestep, x0 ~ U(-1, 1), eps ~ N(0, I)."""
    t, x0, eps = battery(target.T, target.d)
    return t, x0, eps, f"x0 ~ U(-1, 1)^{_shape(target)}, eps ~ N(0, I), 8 rows at each {_where(t)}, seed {SEED}"


def _conversions(target):
    t, x0, eps, _ = _forward(target)
    keep = target.schedule.alpha_bar(t) > 0
    t, x0, eps = t[keep], x0[keep], eps[keep]
    xt = reference.q_sample(target.schedule, x0, t, eps)
    return t, x0, eps, xt, f"battery rows with abar_t > 0 ({_where(t)}), x_t = q_sample, seed {SEED}"


def _posterior(target):
    t, x0, eps, inputs = _forward(target)
    return x0, reference.q_sample(target.schedule, x0, t, eps), t, f"{inputs}; x_t = q_sample"


def _model(target, seed: int = SEED + 1, rows: int = 6):
    """The reverse checks' inputs (`conformance.reverse.model_inputs`) and their description."""
    t, xt, out = model_inputs(target, rows=rows, seed=seed)
    return out, xt, t, f"x_t ~ N(0, I), a model output, {rows} rows at each {_where(t)}, seed {seed}"


def _likelihood(target, seed: int, rows: int = 6):
    """The likelihood checks' inputs (`conformance.likelihood.likelihood_inputs`) and their description."""
    t, x0, eps, xt, out = likelihood_inputs(target, rows=rows, seed=seed)
    return t, x0, eps, xt, out, (f"x0 on the 8-bit grid, eps ~ N(0, I), x_t = q_sample, a model output with "
                                 f"x0_hat near x0, {rows} rows at each {_where(t)}, seed {seed}")


def _args(target, op: str):
    """(arguments of `op`, description of the inputs)."""
    if op in ("betas", "alpha_bar"):
        return (), f"t = 1..{target.T}"
    if op in ("q_mean", "q_variance", "q_log_variance"):
        t, x0, _, inputs = _forward(target)
        return (x0, t), inputs
    if op in ("q_sample", "velocity"):
        t, x0, eps, inputs = _forward(target)
        return (x0, t, eps), inputs
    if op == "q_sample_random":
        t, x0, _, inputs = _forward(target)
        return (x0, t, SEED + 3), f"{inputs}; the target's own noise, seed {SEED + 3}"
    if op in ("x0_from_eps", "eps_from_x0"):
        t, x0, eps, xt, inputs = _conversions(target)
        return (xt, t, eps if op == "x0_from_eps" else x0), inputs
    if op.startswith("posterior_"):
        x0, xt, t, inputs = _posterior(target)
        return (x0, xt, t), inputs
    if op in ("predict_x0", "p_mean", "p_variance", "p_log_variance"):
        out, xt, t, inputs = _model(target)
        return (out, xt, t), inputs
    if op == "reverse_step":
        out, xt, t, inputs = _model(target)
        return (out, xt, t, SEED), f"{inputs}; noise seed {SEED}"
    if op == "vlb_term":
        t, x0, _, xt, out, inputs = _likelihood(target, SEED + 10)
        return (out, x0, xt, t), inputs
    if op == "training_loss":
        t, x0, eps, _, out, inputs = _likelihood(target, SEED + 14)
        return (out, x0, t, eps), inputs
    if op == "prior_term":
        x0 = np.random.default_rng(SEED + 11).uniform(-1, 1, (16, target.d))
        return (x0,), f"x0 ~ U(-1, 1)^{_shape(target)}, 16 rows, seed {SEED + 11}"
    x0 = grid_data(np.random.default_rng(SEED + 12), (4, target.d))           # total_bpd
    return (total_bpd_model(target)[0], x0, SEED + 13), (
        f"x0 on the 8-bit grid, 4 rows, seed {SEED + 12}; model 0.5 tanh(x_t); the target's noise, seed {SEED + 13}")


def _record_strided(target, op: str) -> dict[str, tuple[np.ndarray, str]]:
    """{key: (values, inputs)} of a sampler operation, for each step count n (keys `op.n=<n>`):
    along the valid part of the sampler's own sequence, the strided checks' battery rows."""
    out = {}
    for n, (tau, kept, chain) in strided.chains(target).items():
        key, where = f"{op}.n={n}", f"the sampler of {n} steps"
        if op == "timesteps":
            out[key] = (target.timesteps(n).astype(np.float64), where)
        elif op in ("strided_previous_t", "model_timestep"):
            out[key] = (np.array([target.call(op, n, int(t)) for t in tau], dtype=np.float64), f"{where}, every t")
        elif op == "respaced_betas":
            out[key] = (target.respaced_betas(n), where)
        elif op in ("strided_step", "strided_variance"):
            t, _, xt, model_out = strided.strided_inputs(target, n, tau, kept, chain)
            args = (n, model_out, xt, t, SEED + n) if op == "strided_step" else (n, model_out, xt, t)
            value = target.call(op, *args)
            out[key] = (value[0] if op == "strided_step" else value, f"{where}, {_where(t)}, seed {SEED + 20 + n}")
        elif op == "ddim_step":
            t, _, _, xt, model_out = strided.ddim_rows(target, tau, kept, n, SEED + 30)
            for eta in target.etas:
                out[f"{key}.eta={eta:g}"] = (target.ddim_step(n, model_out, xt, t, eta, SEED + n)[0],
                                             f"{where}, {_where(t)}, seed {SEED + 30 + n}")
        elif op == "ddim_loop":
            for eta in target.etas:
                loop = target.ddim_loop(n, lambda x: 0.5 * np.tanh(x), 8, eta, SEED + 40 + n)
                out[f"{key}.eta={eta:g}"] = (loop["x0"], f"{where}, network 0.5 tanh(x_t), 8 rows, "
                                                         f"seed {SEED + 40 + n}")
        elif op == "ddim_invert" and (rows := strided.inversion_rows(target, tau, n)) is not None:
            s, t, xs, model_out = rows
            out[key] = (target.ddim_invert(n, model_out, xs, t), f"{where}, from s in {_where(s)}")
    return out


def _record(target, op: str) -> dict[str, tuple[np.ndarray, str]]:
    """{key: (values, inputs)} of one operation."""
    if op in STRIDED_OPERATIONS:
        return _record_strided(target, op)
    if op == "previous_t":
        ts = timesteps(target.T)
        return {op: (np.array([target.previous_t(int(k)) for k in ts], dtype=np.float64), _where(ts))}
    if op == "total_bpd" and not x0_defined(target, [target.T]).size:
        return {}                                  # x0 from eps is undefined at abar_T = 0
    args, inputs = _args(target, op)
    value = target.call(op, *args)
    if op == "reverse_step":
        return {op: (value[0], inputs)}
    if op == "total_bpd":
        return {f"{op}.{k}": (value[k], inputs) for k in ("total", "prior", "terms")}
    return {op: (value, inputs)}


def outputs(target, errors: dict | None = None) -> dict[str, tuple[np.ndarray, str]]:
    """{key: (float64 values, description of the inputs)} for every operation the target
    provides. With `errors`, an operation that raises or returns a wrong output is left out and
    its message stored there under the operation's name; without, TargetError names it."""
    target = checked(target)
    result = {}
    for op in OPERATIONS:
        if op not in target.operations:
            continue
        try:
            produced = _record(target, op)
        except (TargetRaised, WrongOutput) as exc:
            if errors is None:
                raise TargetError(f"{target.name}: recording failed: {exc}") from exc
            errors[op] = str(exc)
            continue
        result.update({k: (np.asarray(v, dtype=np.float64), d) for k, (v, d) in produced.items()})
    return result


# -- the file -------------------------------------------------------------------------------------

def encode(values: np.ndarray) -> list:
    """Floats as Python floats (json writes their exact repr); NaN and infinities as strings."""
    return [finite_or_text(v) for v in values.ravel().tolist()]


def record(target) -> dict:
    """The snapshot of `target`: its outputs on the fixed battery, ready for `json.dump`."""
    target = checked(target)
    return {"format": FORMAT, "target": target.name, "version": target.version, "ddpm_verify": __version__,
            "seed": SEED, "unit_roundoff": target.unit_roundoff,
            "outputs": {key: {"shape": list(v.shape), "values": encode(v), "inputs": inputs}
                        for key, (v, inputs) in outputs(target).items()}}


def write(snapshot: dict, path) -> None:
    try:
        with open(path, "w") as fh:
            json.dump(snapshot, fh, allow_nan=False)
    except OSError as exc:
        raise SnapshotError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _decode(key: str, entry) -> np.ndarray:
    if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list) \
            or not isinstance(entry.get("values"), list):
        raise SnapshotError(f"output {key!r} has no shape and values lists")
    shape, values = entry["shape"], entry["values"]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape) \
            or math.prod(shape) != len(values):
        raise SnapshotError(f"output {key!r}: shape {shape} does not hold its {len(values)} values")
    floats = []
    for v in values:
        if isinstance(v, str) and v in _NON_FINITE:
            floats.append(_NON_FINITE[v])
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            floats.append(float(v))
        else:
            raise SnapshotError(f"output {key!r} holds {v!r}, which is neither a number nor nan/inf/-inf")
    return np.array(floats, dtype=np.float64).reshape(shape)


def decode(snapshot) -> dict[str, np.ndarray]:
    """The snapshot's outputs as float64 arrays; SnapshotError when it is not a valid snapshot."""
    if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT:
        found = snapshot.get("format") if isinstance(snapshot, dict) else type(snapshot).__name__
        if isinstance(found, str) and found.startswith(FORMAT.split("/")[0] + "/"):
            raise SnapshotError(f"a snapshot of format {found!r}, written by another version of ddpm-verify "
                                f"(this one reads {FORMAT!r}); record it again with 'ddpm-verify snapshot'")
        raise SnapshotError(f"not a ddpm-verify snapshot (format {found!r}, expected {FORMAT!r})")
    u = snapshot.get("unit_roundoff")
    if not isinstance(u, float) or not 0 < u < 1:
        raise SnapshotError(f"unit_roundoff {u!r} is not a number in (0, 1)")
    if not isinstance(snapshot.get("outputs"), dict):
        raise SnapshotError("no outputs")
    return {key: _decode(key, entry) for key, entry in snapshot["outputs"].items()}


def read(path) -> dict:
    """The snapshot in `path`, validated; SnapshotError naming the path otherwise."""
    try:
        with open(path) as fh:
            snapshot = json.load(fh)
    except FileNotFoundError as exc:
        raise SnapshotError(f"{path}: no such file") from exc
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{path} is not JSON ({exc})") from exc
    try:
        decode(snapshot)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from exc
    return snapshot


# -- comparison -----------------------------------------------------------------------------------

@dataclass
class Change:
    """One output that differs from the snapshot. kind: changed (beyond tolerance), non-finite
    (NaN or inf where the snapshot had another value, or the reverse), shape, missing (no longer
    produced) or new (not in the snapshot; not a failure). `count` of `size` elements are beyond
    tolerance; `index` is the worst of them, with its old and new value and tolerance."""

    key: str
    kind: str
    count: int = 0
    size: int = 0
    index: tuple = ()
    old: float = math.nan
    new: float = math.nan
    tolerance: float = math.nan
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind != "new"


def _compare_output(key: str, old: np.ndarray, new: np.ndarray, u: float, inputs: str) -> Change | None:
    if old.shape != new.shape:
        return Change(key, "shape", size=old.size, detail=f"shape {list(old.shape)} -> {list(new.shape)}; {inputs}")
    finite_old, finite_new = np.isfinite(old), np.isfinite(new)
    scale = float(np.median(np.abs(old[finite_old]))) if finite_old.any() else 0.0
    tol = ULPS * u * (np.abs(np.where(finite_old, old, 0.0)) + scale)
    same_non_finite = ~finite_old & ~finite_new & ((old == new) | (np.isnan(old) & np.isnan(new)))
    non_finite = (finite_old != finite_new) | (~finite_old & ~same_non_finite)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.where(finite_old & finite_new, np.abs(new - old), 0.0)
        ratio = np.where(diff > tol, np.where(tol > 0, diff / tol, np.inf), 0.0)
    ratio = np.where(non_finite, np.inf, ratio)
    beyond = ratio > 1
    if not beyond.any():
        return None
    i = np.unravel_index(np.argmax(ratio), old.shape)
    return Change(key, "non-finite" if non_finite.any() else "changed", int(beyond.sum()), old.size,
                  tuple(int(k) for k in i), float(old[i]), float(new[i]), float(tol[i]), inputs)


def compare(target, snapshot: dict) -> list[Change]:
    """Recompute the snapshot's outputs with `target`; the outputs that differ, in snapshot order,
    then the new ones.

    Element tolerance: 64 u (|old| + median |old| of the output), u the larger of the target's
    unit roundoff and the snapshot's. The same code on another machine, BLAS or torch version may
    reorder float32 arithmetic, which moves each operation's result by a few u, about ten operations
    deep; the median term covers elements that are small only by cancellation (the median, not the
    rms, so that an output spanning orders of magnitude keeps a tight tolerance). 64 u leaves margin for
    that, while a change of formula (a missing square root, nats for bits, an index off by one)
    moves values by far more. A NaN or inf where the snapshot was finite, or the reverse, a changed
    shape and an output no longer produced are changes too.
    """
    target = checked(target)
    old = decode(snapshot)
    meta = snapshot["outputs"]
    u = max(float(target.unit_roundoff), float(snapshot["unit_roundoff"]))
    errors: dict[str, str] = {}
    now = outputs(target, errors)
    raised = "; ".join(f"{op} raised {msg}" for op, msg in errors.items())
    changes = []
    for key, values in old.items():
        inputs = str(meta[key].get("inputs", ""))
        if key not in now:
            changes.append(Change(key, "missing", values.size, values.size,
                                  detail=f"no longer produced{f' ({raised})' if raised else ''}; {inputs}"))
            continue
        change = _compare_output(key, values, now[key][0], u, inputs)
        if change:
            changes.append(change)
    changes += [Change(key, "new", size=v.size, detail=inputs) for key, (v, inputs) in now.items() if key not in old]
    return changes


# -- the commands ---------------------------------------------------------------------------------

def _target(spec: str):
    target = resolve(spec)
    if target is None:
        raise TargetError("'reference' is the float64 reference itself, not an implementation to snapshot; "
                          "name a target such as diffusers, guided-diffusion or package.module:attr")
    return checked(target)


def _snapshot(args) -> int:
    target = _target(args.target)
    snapshot = record(target)
    write(snapshot, args.output)
    print(f"recorded {len(snapshot['outputs'])} outputs of {target.name} to {args.output}")
    return 0


def _warnings(target, snapshot: dict) -> list[str]:
    notes = []
    if snapshot.get("target") != target.name:
        notes.append(f"the snapshot was taken of {snapshot.get('target')!r}, not of {target.name!r}; comparing anyway")
    if snapshot.get("seed") != SEED or snapshot.get("ddpm_verify") != __version__:
        notes.append(f"the snapshot was taken with ddpm-verify {snapshot.get('ddpm_verify')} (seed "
                     f"{snapshot.get('seed')}), this is {__version__} (seed {SEED}): the inputs may differ")
    return notes


def _print_changes(target, snapshot: dict, changes: list[Change]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    n = len(snapshot["outputs"])
    failed = [c for c in changes if c.failed]
    new = len(changes) - len(failed)
    if changes:
        table = Table(title=f"ddpm-verify regress: {target.name} ({target.version}) against the snapshot of "
                            f"{snapshot.get('target')} ({snapshot.get('version')})")
        for col in ("output", "change", "beyond tolerance", "worst index", "snapshot", "now", "tolerance", "inputs"):
            table.add_column(col, justify="right" if col in ("snapshot", "now", "tolerance") else "left")
        colour = {"new": "cyan"}
        for c in changes:
            counted = c.kind not in ("new", "shape")
            table.add_row(c.key, f"[{colour.get(c.kind, 'red')}]{c.kind}[/]",
                          f"{c.count} of {c.size}" if counted else "", str(list(c.index)) if c.index else "",
                          f"{c.old:.9g}" if c.index else "", f"{c.new:.9g}" if c.index else "",
                          f"{c.tolerance:.3g}" if c.index else "", c.detail)
        console.print(table)
    extra = f"; {new} new output{'s' if new != 1 else ''}" if new else ""
    if failed:
        console.print(f"CHANGED: {len(failed)} of {n} outputs changed beyond tolerance{extra}", highlight=False)
    else:
        console.print(f"no change beyond tolerance in {n} outputs{extra}", highlight=False)


def _regress(args) -> int:
    snapshot = read(args.snapshot)
    target = _target(args.target)
    for note in _warnings(target, snapshot):
        print(f"ddpm-verify: warning: {note}", file=sys.stderr)
    changes = compare(target, snapshot)
    _print_changes(target, snapshot, changes)
    return 1 if any(c.failed for c in changes) else 0


def command(args) -> int:
    """`ddpm-verify snapshot` (exit 0) and `ddpm-verify regress` (0: no change beyond tolerance,
    new outputs aside; 1: a change); 2 with one line on stderr when the target cannot be resolved
    or recorded, or the snapshot file cannot be read or written."""
    try:
        return _snapshot(args) if args.command == "snapshot" else _regress(args)
    except (SnapshotError, TargetError) as exc:
        print(f"ddpm-verify: error: {exc}", file=sys.stderr)
        return 2
