"""Adapter for lucidrains' `denoising_diffusion_pytorch.GaussianDiffusion` (2.x).

Importing: the package imports torchvision, ema_pytorch and accelerate at module level for its
trainer and U-Net; its diffusion math uses none of them. Where one cannot be imported (torchvision
has no CPU build beside this project's torch), `import_lucidrains` puts a stub in its place whose
every attribute and call raises: a math path that did use it would make the check an ``error``,
never a pass. Nothing is stubbed that imports.

Index translation (the one place): lucidrains' time i is paper t = i + 1. Its buffers are
computed in float64 and stored in float32 (`table_roundoff` 2**-53, storage read from the
dtypes). Conventions read from its code: log beta_tilde_1 floored at log(1e-20), x0_hat clipped
to [-1, 1] in p_sample and in DDIM (which re-derives eps from the clipped x0_hat), the DDIM loop
ends at abar_0 = 1. Its network is ours: a module returning the model output the check gives
(`_GivenOutput`), so `p_mean_variance`, `p_sample`, `p_losses` and `ddim_sample` run unchanged.
`ddim_sample` is one loop with no single step to call: `ddim_loop` runs it with a given model
function and returns what the model saw (the timesteps and inputs), the noise it drew, and x_0.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np

import reference
from reference.conventions import Prediction, Variance

from ..errors import TargetError
from ..stubs import stub_missing
from .protocol import package_version

#: modules the package imports for its trainer and network, never for the diffusion math
STUBBED = ("torchvision", "ema_pytorch", "accelerate")
SCHEDULES = ("linear", "cosine", "sigmoid")
OBJECTIVES = {"pred_noise": Prediction.EPSILON, "pred_x0": Prediction.SAMPLE, "pred_v": Prediction.V}
STEP_COUNTS = (10, 30, 37, 50)


def import_lucidrains():
    """`denoising_diffusion_pytorch`, imported with the stubs of `STUBBED` modules that cannot be
    imported (and only those); TargetError when the package itself is missing."""
    import importlib

    stub_missing(*STUBBED)
    try:
        return importlib.import_module("denoising_diffusion_pytorch")
    except ImportError as exc:
        raise TargetError("denoising-diffusion-pytorch is not installed: pip install --no-deps "
                          f"denoising-diffusion-pytorch==2.3.4 (see the README) ({exc})") from exc


def looks_like_lucidrains(obj) -> bool:
    return all(hasattr(obj, a) for a in ("p_losses", "model_predictions", "q_posterior", "num_timesteps",
                                         "sampling_timesteps", "objective"))


def checker_network_for(channels: int):
    """A network for GaussianDiffusion whose output is set by the check (or a function of x_t)."""
    import torch

    class _GivenOutput(torch.nn.Module):
        self_condition, random_or_learned_sinusoidal_cond, checker_network = False, False, True

        def __init__(self):
            super().__init__()
            self.channels = self.out_dim = channels
            self.output, self.function, self.seen = None, None, []

        def forward(self, x, t, x_self_cond=None):
            self.seen.append((t.detach().clone(), x.detach().clone()))
            return self.function(x) if self.function is not None else self.output

    return _GivenOutput()


class LucidrainsDiffusion:
    """A target over a lucidrains `GaussianDiffusion` whose network is `checker_network_for`'s (the adapter
    builds it; `build` makes one from options)."""

    log_variance_at_1, variance_floor = "floor", 1e-20
    variance_type, clip_sample = Variance.FIXED_SMALL, True
    unit_roundoff, table_roundoff = 2.0 ** -24, 2.0 ** -53

    def __init__(self, diffusion, schedule: str | None = None, min_snr_gamma: float | None = None):
        """`schedule`: the beta_schedule it was built with (linear, cosine, sigmoid; None: its own betas
        are taken as given); `min_snr_gamma`: its min-SNR gamma (inf without min_snr_loss_weight; None:
        unknown, and its training loss is not checked). A copy of `diffusion` is checked, with the
        checker's network in place of its own."""
        import copy

        import torch

        self._torch = torch
        if not getattr(diffusion.model, "checker_network", False):
            net = checker_network_for(int(diffusion.channels))
            diffusion = copy.copy(diffusion)              # shares the buffers; the network is replaced
            diffusion._modules = dict(diffusion._modules, model=net)
        self.diffusion = diffusion
        self.net = diffusion.model
        self.T = int(diffusion.num_timesteps)
        self.schedule_name = schedule
        self.schedule_is_named = schedule is not None
        objective = diffusion.objective
        self.prediction_type = OBJECTIVES[objective]
        self.loss_target = OBJECTIVES[objective]
        self.loss_weighting = "min_snr"
        self.min_snr_gamma = math.inf if min_snr_gamma is None else float(min_snr_gamma)
        self.data_shape = (diffusion.channels, *diffusion.image_size)
        n = int(diffusion.sampling_timesteps)
        self.step_counts = (n,) if n < self.T else tuple(k for k in STEP_COUNTS if k < self.T)
        self.timestep_rule = "lucidrains"
        self.etas = tuple(sorted({0.0, float(diffusion.ddim_sampling_eta), 0.5, 1.0}))
        self.version = package_version(type(diffusion))
        self.name = (f"{type(diffusion).__name__}(schedule={schedule or 'own betas'}, T={self.T}, "
                     f"objective={objective}, sampling_timesteps={n}, min_snr_gamma={self.min_snr_gamma:g})")
        ops = {"betas", "alpha_bar", "q_sample", "velocity", "x0_from_eps", "eps_from_x0", "posterior_mean",
               "posterior_variance", "posterior_log_variance", "predict_x0", "p_mean", "p_variance", "p_log_variance",
               "reverse_step", "timesteps", "ddim_loop"}
        self.operations = frozenset(ops | ({"training_loss"} if min_snr_gamma is not None else set()))

    def reference_schedule(self) -> reference.Schedule:
        if self.schedule_name == "linear":
            return reference.linear(self.T, scale_with_T=True)
        if self.schedule_name == "cosine":
            return reference.cosine(self.T)
        if self.schedule_name == "sigmoid":
            return reference.sigmoid_alpha_bar(self.T)
        return reference.Schedule(self.diffusion.betas.double().numpy(), name="own betas")

    # -- translation -------------------------------------------------------------------------------
    def _x(self, a):
        return self._torch.as_tensor(np.asarray(a), dtype=self._torch.float32)

    def _i(self, t):
        return self._torch.as_tensor(np.asarray(t) - 1, dtype=self._torch.long)

    def _given(self, output):
        self.net.output, self.net.function = self._x(output), None

    # -- operations ----------------------------------------------------------------------------------
    def betas(self):
        return self.diffusion.betas

    def alpha_bar(self):
        return self.diffusion.alphas_cumprod

    def q_sample(self, x0, t, eps):
        return self.diffusion.q_sample(self._x(x0), self._i(t), noise=self._x(eps))

    def velocity(self, x0, t, eps):
        return self.diffusion.predict_v(self._x(x0), self._i(t), self._x(eps))

    def x0_from_eps(self, xt, t, eps):
        return self.diffusion.predict_start_from_noise(self._x(xt), self._i(t), self._x(eps))

    def eps_from_x0(self, xt, t, x0):
        return self.diffusion.predict_noise_from_start(self._x(xt), self._i(t), self._x(x0))

    def posterior_mean(self, x0, xt, t):
        return self.diffusion.q_posterior(self._x(x0), self._x(xt), self._i(t))[0]

    def posterior_variance(self, x0, xt, t):
        return self.diffusion.q_posterior(self._x(x0), self._x(xt), self._i(t))[1]

    def posterior_log_variance(self, x0, xt, t):
        return self.diffusion.q_posterior(self._x(x0), self._x(xt), self._i(t))[2]

    def _p(self, model_output, xt, t, k):
        self._given(model_output)
        return self.diffusion.p_mean_variance(self._x(xt), self._i(t), clip_denoised=True)[k]

    def p_mean(self, model_output, xt, t):
        return self._p(model_output, xt, t, 0)

    def p_variance(self, model_output, xt, t):
        return self._p(model_output, xt, t, 1)

    def p_log_variance(self, model_output, xt, t):
        return self._p(model_output, xt, t, 2)

    def predict_x0(self, model_output, xt, t):
        return self._p(model_output, xt, t, 3)

    def reverse_step(self, model_output, xt, t, seed: int):
        """`p_sample(x, t)` (one int t per call) at each t, seeded; its noise (one randn_like after
        the model) regenerated."""
        torch = self._torch
        prev, noise = torch.zeros(np.shape(xt)), torch.zeros(np.shape(xt))
        for k in np.unique(t):
            rows = np.flatnonzero(np.asarray(t) == k)
            self._given(np.asarray(model_output)[rows])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + int(k))
                prev[rows] = self.diffusion.p_sample(self._x(np.asarray(xt)[rows]), int(k) - 1)[0]
                torch.manual_seed(seed + int(k))
                noise[rows] = torch.randn((len(rows), *self.data_shape))
        return prev, noise

    def training_loss(self, model_output, x0, t, eps):
        self._given(model_output)
        return self.diffusion.p_losses(self._x(x0), self._i(t), noise=self._x(eps), loss_reduction="none")

    # -- the DDIM loop ----------------------------------------------------------------------------------
    def _with_steps(self, n: int, eta: float | None = None):
        """Context: sampling_timesteps = n (and ddim_sampling_eta = eta), restored afterwards."""
        diffusion = self.diffusion
        adapter = self

        class _Set:
            def __enter__(self):
                self.saved = (diffusion.sampling_timesteps, diffusion.is_ddim_sampling, diffusion.ddim_sampling_eta)
                diffusion.sampling_timesteps, diffusion.is_ddim_sampling = n, True
                if eta is not None:
                    diffusion.ddim_sampling_eta = eta
                self.quiet = contextlib.redirect_stderr(io.StringIO())   # the sampling loop's progress bar
                self.quiet.__enter__()
                adapter.net.seen.clear()

            def __exit__(self, *exc):
                self.quiet.__exit__(*exc)
                diffusion.sampling_timesteps, diffusion.is_ddim_sampling, diffusion.ddim_sampling_eta = self.saved
        return _Set()

    def timesteps(self, n: int):
        """The times `ddim_sample` calls the network with, in order (paper t)."""
        self.net.function = lambda x: self._torch.zeros_like(x)
        with self._with_steps(n):
            self.diffusion.ddim_sample((1, *self.data_shape))
            seen = [int(t[0]) + 1 for t, _ in self.net.seen]
        return np.array(seen, dtype=np.int64)

    def ddim_loop(self, n: int, model_fn, rows: int, eta: float, seed: int) -> dict:
        """`ddim_sample((rows, *data_shape))` with the network `model_fn`, seeded; returns the timesteps
        and inputs the network saw, the noise of each step regenerated (the loop draws x_T, then one
        randn_like per step that goes to a later x, none on the step to x_0), and the output (the
        loop's unnormalize undone)."""
        torch = self._torch
        self.net.function = lambda x: torch.as_tensor(model_fn(x.double().numpy()), dtype=torch.float32)
        shape = (rows, *self.data_shape)
        with self._with_steps(n, eta):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                out = self.diffusion.ddim_sample(shape)
                seen = list(self.net.seen)
                torch.manual_seed(seed)
                torch.randn(shape)
                noise = [torch.randn(shape) for _ in seen[:-1]]
        return {"t": np.array([int(t[0]) + 1 for t, _ in seen]), "x": torch.stack([x for _, x in seen]),
                "z": torch.stack(noise + [torch.zeros(shape)]), "x0": self.diffusion.normalize(out)}


def build(timesteps: int = 1000, sampling_timesteps: int | None = None, objective: str = "pred_v",
          beta_schedule: str = "sigmoid", ddim_sampling_eta: float = 0.0, min_snr_loss_weight: bool = False,
          min_snr_gamma: float = 5.0, image_size: int = 8, channels: int = 3) -> LucidrainsDiffusion:
    """A lucidrains GaussianDiffusion with these options (its own names and defaults; image_size and
    channels make the data shape (channels, image_size, image_size)) and the checker's network."""
    ddp = import_lucidrains()
    if objective not in OBJECTIVES:
        raise TargetError(f"lucidrains objective={objective!r} is none of {', '.join(OBJECTIVES)}")
    if beta_schedule not in SCHEDULES:
        raise TargetError(f"lucidrains beta_schedule={beta_schedule!r} is none of {', '.join(SCHEDULES)}")
    try:
        diffusion = ddp.GaussianDiffusion(checker_network_for(channels), image_size=image_size, timesteps=timesteps,
                                          sampling_timesteps=sampling_timesteps, objective=objective,
                                          beta_schedule=beta_schedule, ddim_sampling_eta=ddim_sampling_eta,
                                          min_snr_loss_weight=min_snr_loss_weight, min_snr_gamma=min_snr_gamma,
                                          auto_normalize=False)
    except Exception as exc:  # noqa: BLE001 - any construction failure is a bad target
        raise TargetError(f"lucidrains GaussianDiffusion could not be built: {type(exc).__name__}: {exc}") from exc
    return LucidrainsDiffusion(diffusion, beta_schedule, float(min_snr_gamma) if min_snr_loss_weight else math.inf)
