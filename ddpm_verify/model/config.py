"""The configuration of the trained DDPM: data, schedule, network and optimisation, as plain
values that a checkpoint stores and `torch.load(weights_only=True)` reads back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import reference

SCHEDULES = {"linear": reference.linear, "cosine": reference.cosine}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (given the device's arithmetic).

    Data: an equal-weight ring of `modes` isotropic Gaussians, means on a circle of `radius`,
    standard deviation `std` (`reference.GaussianMixture.ring`). Schedule: `schedule` with `T`
    steps. Network: `EpsMLP(d=2, hidden, depth, emb_dim)`. Optimisation: Adam on L_simple with
    t ~ U{1..T}, `batch` examples per step, learning rate `lr` after `warmup` steps of linear
    warm-up, cosine decay to 0 at `steps`; the weights kept are an exponential moving average
    with decay `ema_decay`. `seed` seeds the initialisation and every draw.
    """

    modes: int = 8
    radius: float = 1.0
    std: float = 0.1
    schedule: str = "linear"
    T: int = 1000
    hidden: int = 128
    depth: int = 3
    emb_dim: int = 128
    steps: int = 40_000
    batch: int = 1024
    lr: float = 2e-3
    warmup: int = 500
    ema_decay: float = 0.999
    seed: int = 0

    def __post_init__(self):
        ints = {"modes": 1, "T": 2, "hidden": 1, "depth": 1, "emb_dim": 2, "steps": 1, "batch": 1, "warmup": 0,
                "seed": 0}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
        if self.emb_dim % 2:
            raise ValueError(f"emb_dim must be even; got {self.emb_dim}")
        for name in ("radius", "std", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a number > 0; got {v!r}")
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay must lie in [0, 1); got {self.ema_decay!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config from a checkpoint's dict; unknown or missing keys are an error naming them."""
        if not isinstance(values, dict):
            raise ValueError(f"config must be a dict; got {type(values).__name__}")  # noqa: TRY004
        names = {f.name for f in fields(cls)}
        if set(values) != names:
            raise ValueError(f"config keys differ from this version's: missing {sorted(names - set(values))}, "
                             f"unknown {sorted(set(values) - names)}")
        return cls(**values)

    def mixture(self) -> reference.GaussianMixture:
        return reference.GaussianMixture.ring(self.modes, self.radius, self.std)

    def reference_schedule(self) -> reference.Schedule:
        return SCHEDULES[self.schedule](self.T)
