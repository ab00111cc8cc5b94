"""The network the checker hands to a user's loop or loss: the exact optimum for Gaussian data.

The data are N(mu_j, s_j^2) independently in each dimension j, with (mu_j, s_j) from a few
groups (`GROUPS`): a medium one, a narrow one (s = 0.03, where errors of the last steps show)
and a wide one, or a third medium one when the code clips to [-1, 1] (then every group keeps
|mu| + 7 s <= 0.9, so clipping never touches the optimal x0_hat); the loss checks add a
narrowest one (s = 0.01), where errors of the forward tables at small t show. For such data the optimal
prediction of each type is affine in x_t (`reference.GaussianData.prediction`, docs/math.md §11), so a
loop run with it is linear-Gaussian and its output law is exact, and so is the law of every
squared error a loss takes.

`OracleModel` is a `torch.nn.Module`: `model(x, t, *args, **kwargs)` returns the optimal
prediction (plus a known perturbation offset + gain x_t, for the loss checks) shaped like x, on
x's device and in its dtype, computed in float64. It records every call: the paper t of each
row, and the sums over rows of x and x^2 per dimension (or x itself on request), and, given a
`ForwardLaw`, adds the x it gets to that record of the law of x_t. A t out of
range, or a t that is not an integer where the declaration says index or paper, raises a
BadModelCall (a ValueError) naming the value and the convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import reference
from reference.conventions import Timesteps

from ..adapters.protocol import BadModelCall

#: (mu, s) of the data groups; the third is replaced by CLIPPED_THIRD when the code clips
GROUPS = ((0.2, 0.1), (-0.1, 0.03), (0.0, 0.5))
CLIPPED_THIRD = (-0.3, 0.08)


#: the loss checks' fourth group: at t = 1 its D_1 = s^2 + beta_1 is half noise, so forward tables
#: that are off at small t (an extra factor in abar) move the law of x_t by tens of percent
NARROWEST = (0.1, 0.01)


def groups(clip_sample: bool) -> tuple[tuple[float, float], ...]:
    return GROUPS[:2] + ((CLIPPED_THIRD,) if clip_sample else GROUPS[2:])


def loss_groups() -> tuple[tuple[float, float], ...]:
    return GROUPS + (NARROWEST,)


def group_label(mu: float, s: float) -> str:
    return f"N({mu:g}, {s:g}^2)"


@dataclass(frozen=True)
class OracleData:
    """Gaussian data over d dimensions, dimension j in group `group[j]` of `params`."""

    data: reference.GaussianData
    group: np.ndarray
    params: tuple

    @classmethod
    def build(cls, d: int, params, rotation: int = 0) -> OracleData:
        group = (np.arange(d) + rotation) % len(params)
        mu = np.array([params[g][0] for g in group])
        s = np.array([params[g][1] for g in group])
        return cls(reference.GaussianData(mu, s ** 2), group, tuple(params))

    @staticmethod
    def passes(d: int, params) -> list[OracleData]:
        """Enough data sets (rotating the groups) that every group has a dimension."""
        return [OracleData.build(d, params, k * d) for k in range(math.ceil(len(params) / d))]


@dataclass
class Call:
    """One call of the network: the paper t of each row, the row count, and per dimension the sums
    over rows of x and x^2 (float64), or the rows themselves (`inputs`) when kept."""

    t: np.ndarray
    rows: int
    sum_x: np.ndarray
    sum_x2: np.ndarray
    inputs: np.ndarray | None = None


class ForwardLaw:
    """What a loss hands the network, against q(x_t) of the data: per paper t (rows t - 1) and data
    group, the count of values and the sums of z and z^2, z = (x - sqrt(abar_t) mu) / sqrt(D_t),
    which is N(0, 1) when x is x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps of the declared
    schedule (`reference.GaussianData.marginal`). The rows of many calls are held and added up
    together, BUFFER values at a time (a loss check makes about a thousand small calls)."""

    BUFFER = 1 << 20

    def __init__(self, data: OracleData, schedule: reference.Schedule):
        law = data.data.marginal(schedule, np.arange(1, schedule.T + 1))
        self._mean, self._sd = law.mean, np.sqrt(law.variance)                     # (T, d)
        groups = len(data.params)
        self._onehot = np.eye(groups)[data.group]                                 # (d, groups)
        self._dims = np.bincount(data.group, minlength=groups).astype(np.float64)
        self._sums = np.zeros((3, schedule.T, groups))                             # count, sum z, sum z^2
        self._held: list[tuple[np.ndarray, np.ndarray]] = []
        self._held_values = 0

    def add(self, x64: np.ndarray, paper: np.ndarray) -> None:
        """Add the rows x64 (n, d), float64, called with paper timesteps `paper` (n,) (both copied)."""
        self._held.append((np.array(x64, dtype=np.float64), np.array(paper)))
        self._held_values += x64.size
        if self._held_values >= self.BUFFER:
            self._add_held()

    @property
    def count(self) -> np.ndarray:
        return self._added()[0]

    @property
    def sum_z(self) -> np.ndarray:
        return self._added()[1]

    @property
    def sum_z2(self) -> np.ndarray:
        return self._added()[2]

    def _added(self) -> np.ndarray:
        if self._held:
            self._add_held()
        return self._sums

    def _add_held(self) -> None:
        x = np.concatenate([x for x, _ in self._held])
        rows = np.concatenate([p for _, p in self._held]) - 1
        self._held, self._held_values = [], 0
        z = (x - self._mean[rows]) / self._sd[rows]
        T = self._sums.shape[1]
        self._sums[0] += np.bincount(rows, minlength=T)[:, None] * self._dims
        self._sums[1] += self._by_row(rows, z)
        self._sums[2] += self._by_row(rows, z * z)

    def _by_row(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The sums of `values` (n, d) over the rows of each t, per data group: (T, groups); summed
        over the dimensions of a group first when there are more dimensions than groups."""
        onehot = self._onehot
        grouped = values.shape[1] > onehot.shape[1]
        columns = np.ascontiguousarray((values @ onehot if grouped else values).T)
        sums = np.stack([np.bincount(rows, weights=c, minlength=self._sums.shape[1]) for c in columns], axis=1)
        return sums if grouped else sums @ onehot


class OracleModel(torch.nn.Module):
    """model(x, t, *args, **kwargs) = the optimal `prediction_type` prediction for `data` under
    `schedule`, plus offset + gain x; t in the code's `timesteps` convention ("index": t - 1;
    "paper": t; "fraction": t / T)."""

    def __init__(self, data: OracleData, schedule: reference.Schedule, data_shape: tuple, timesteps: str,
                 prediction_type: str, *, offset: float = 0.0, gain: float = 0.0, keep_inputs: bool = False,
                 law: ForwardLaw | None = None):
        super().__init__()
        # a parameter, so that code asking next(model.parameters()) for a device or dtype gets one
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.data_shape, self.timesteps, self.T = tuple(data_shape), timesteps, schedule.T
        slope, intercept = data.data.prediction(schedule, np.arange(1, schedule.T + 1), prediction_type)
        self._slope = torch.from_numpy(slope + gain)            # (T, d) float64, paper t - 1
        self._intercept = torch.from_numpy(intercept + offset)
        self.keep_inputs, self.law = keep_inputs, law
        self.calls: list[Call] = []

    def paper_t(self, t, n: int) -> np.ndarray:
        """The paper timesteps 1..T of a batch of n rows from the t the code passed (ValueError
        naming the value and the convention when it is not one)."""
        raw = t.detach().cpu().double().numpy() if torch.is_tensor(t) else np.asarray(t, dtype=np.float64)
        values = raw.reshape(-1)
        if values.size not in (1, n):
            raise BadModelCall(f"the network was called with t of shape {tuple(raw.shape)} for a batch of {n} rows")
        if not np.all(np.isfinite(values)):
            raise BadModelCall(f"the network was called with a non-finite t ({values[~np.isfinite(values)][0]})")
        if self.timesteps == Timesteps.FRACTION:
            scaled = values * self.T
            paper = np.rint(scaled)
            if np.any(np.abs(scaled - paper) > 1e-3 * np.maximum(1.0, paper)):
                bad = values[np.abs(scaled - paper) > 1e-3 * np.maximum(1.0, paper)][0]
                raise BadModelCall(f"the network was called with t = {bad:g}, which is not k / T for an integer k "
                                 f"(timesteps='fraction', T = {self.T})")
        else:
            paper = values + (1 if self.timesteps == Timesteps.INDEX else 0)
            if np.any(paper != np.rint(paper)):
                bad = values[paper != np.rint(paper)][0]
                raise BadModelCall(f"the network was called with t = {bad:g}, not an integer (timesteps="
                                 f"'{self.timesteps}'; a code passing t / T declares timesteps='fraction')")
        paper = paper.astype(np.int64)
        out = (paper < 1) | (paper > self.T)
        if np.any(out):
            lo, hi = {Timesteps.INDEX: (0, self.T - 1), Timesteps.PAPER: (1, self.T),
                      Timesteps.FRACTION: (f"1/{self.T}", 1)}[self.timesteps]
            bad = values[out][0]
            raise BadModelCall(f"the network was called with t = {bad:g}, outside {lo}..{hi} "
                             f"(timesteps='{self.timesteps}', T = {self.T})")
        return np.broadcast_to(paper, (n,)).copy()

    def forward(self, x, t, *args, **kwargs):
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise BadModelCall(f"the network was called with x of type {type(x).__name__}; it takes a float tensor")
        if tuple(x.shape[1:]) != self.data_shape:
            raise BadModelCall(f"the network was called with x of shape {tuple(x.shape)}; the declared data_shape is "
                             f"{self.data_shape}, so x must be (n, {', '.join(map(str, self.data_shape))})")
        n = x.shape[0]
        paper = self.paper_t(t, n)
        rows = torch.from_numpy(paper - 1)
        x64 = x.detach().to(torch.float64).reshape(n, -1)
        out = (self._slope[rows].to(x.device) * x64 + self._intercept[rows].to(x.device)).reshape(x.shape)
        x_cpu = x64.cpu()
        if self.law is not None:
            self.law.add(x_cpu.numpy(), paper)
        self.calls.append(Call(paper, n, x_cpu.sum(0).numpy(), (x_cpu ** 2).sum(0).numpy(),
                               x_cpu.numpy().copy() if self.keep_inputs else None))
        out = out.to(x.dtype)
        return out + 0 * self.anchor.to(x.dtype) if torch.is_grad_enabled() else out
