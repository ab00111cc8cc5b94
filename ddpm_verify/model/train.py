"""Training the noise predictor on L_simple: CUDA when available, else CPU; seeded; progress bar
and periodic loss log; returns a checkpoint dict (see `checkpoint`)."""

from __future__ import annotations

import math
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from .checkpoint import FORMAT, FORMAT_VERSION
from .config import TrainConfig
from .losses import Tables, l_simple, q_sample
from .network import EpsMLP


def pick_device(name: str | None = None) -> torch.device:
    """torch.device(name), or cuda when available and cpu otherwise; an unusable name is an error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device must be cpu, cuda or cuda:N; got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N; got {name!r}")
    return device


class MixtureData:
    """Draws from a `reference.GaussianMixture` on a torch device: x0 = m_k + L_k z, k ~ pi, z ~ N(0, I)."""

    def __init__(self, mixture, device):
        self.d = mixture.d
        self.weights = torch.tensor(mixture.weights, dtype=torch.float32, device=device)
        self.means = torch.tensor(mixture.means, dtype=torch.float32, device=device)
        self.chol = torch.tensor(np.linalg.cholesky(mixture.covariances), dtype=torch.float32, device=device)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.d, 1, generator=generator, device=self.means.device)
        return self.means[k] + (self.chol[k] @ z)[..., 0]


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over cfg.warmup steps to cfg.lr, then cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def provenance(device: torch.device, cfg: TrainConfig, wall_time_s: float, compiled: bool) -> dict:
    """Where and how a checkpoint was made: device, steps, seed, wall time, library versions."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                             platform.machine())
    return {"device": str(device), "device_name": name, "cuda_available": torch.cuda.is_available(),
            "torch_threads": torch.get_num_threads(), "steps": cfg.steps, "seed": cfg.seed,
            "wall_time_s": round(wall_time_s, 2), "steps_per_s": round(cfg.steps / wall_time_s, 2),
            "compiled": compiled, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__,
            "ddpm_verify": __version__, "platform": platform.platform()}


def train(cfg: TrainConfig, *, device: str | None = None, compile: bool = False, log_every: int = 1000,
          progress: bool = True, callback=None) -> dict:
    """Train EpsMLP on L_simple under `cfg`; return the checkpoint dict (EMA weights on the CPU).

    log_every: steps between loss log lines (mean L_simple over the interval, nats-free units:
    squared noise error per example). callback(step, ema_net), when given, runs at every log line.
    The loss is read back from the device only at log lines, so the hot loop never synchronises.
    """
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    tab = Tables.from_schedule(cfg.reference_schedule(), dev)
    data = MixtureData(cfg.mixture(), dev)
    net = EpsMLP(data.d, cfg.hidden, cfg.depth, cfg.emb_dim).to(dev)
    ema = EpsMLP(data.d, cfg.hidden, cfg.depth, cfg.emb_dim).to(dev)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    forward = torch.compile(net) if compile else net
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    params, ema_params = list(net.parameters()), list(ema.parameters())
    log = {"step": [], "loss": [], "elapsed_s": []}
    running = torch.zeros((), device=dev)
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train", unit="step", disable=not progress, file=sys.stderr,
               mininterval=1.0)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        x0 = data.sample(cfg.batch, gen)
        t = torch.randint(1, cfg.T + 1, (cfg.batch,), generator=gen, device=dev)
        eps = torch.randn(cfg.batch, data.d, generator=gen, device=dev)
        loss = l_simple(eps, forward(q_sample(tab, x0, t, eps), t)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(ema_params, params):
                pe.lerp_(p, 1 - decay)
            running += loss.detach()
        done = step + 1
        if done % log_every == 0 or done == cfg.steps:
            n = done - (log["step"][-1] if log["step"] else 0)
            mean = running.item() / n
            running.zero_()
            elapsed = time.perf_counter() - start
            log["step"].append(done)
            log["loss"].append(mean)
            log["elapsed_s"].append(round(elapsed, 2))
            bar.set_postfix(loss=f"{mean:.4f}")
            msg = f"step {done}/{cfg.steps}  L_simple {mean:.5f}  lr {learning_rate(cfg, step):.2e}  {elapsed:.0f}s"
            bar.write(msg) if progress else print(msg, flush=True)
            if callback is not None:
                callback(done, ema)
    wall = time.perf_counter() - start
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
            "provenance": provenance(dev, cfg, wall, compile), "loss_log": log}
