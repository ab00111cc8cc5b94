"""Template adapter for `ddpm-verify check`: a plain NumPy DDPM and the adapter that shows it to
the checks.

    ddpm-verify template > my_target.py
    ddpm-verify check my_target:make_target

As printed, it checks `NumpyDDPM` below (float64, linear schedule, T = 1000, eps-prediction,
fixed small variance, x0_hat clipped to [-1, 1], discretised decoder with the exact normal CDF)
and every check passes. To check your code:

1. replace `NumpyDDPM` by your implementation (import it instead);
2. make each method of `Target` call the function of your code that computes the same thing,
   converting paper t = 1..T to your indexing (here i = t - 1) and your units to nats per
   example; delete the methods you do not have, and their names from `operations`;
3. set the declared attributes (`unit_roundoff`, `data_shape`, `prediction_type`,
   `variance_type`, clipping and the conventions) to what your code does.

Every method receives NumPy float64 arrays of shape (n, *data_shape) and `t` as an int array
of one paper timestep per row, and may return NumPy arrays or torch tensors in its own dtype.
The full protocol (every attribute, its meaning and default) is the docstring of
`ddpm_verify.adapters.protocol`; the README lists which check uses which operation.
"""

import numpy as np
from scipy.special import ndtr

import reference

# -- the code under test: a from-scratch DDPM (replace it with yours) --------------------------------

class NumpyDDPM:
    """DDPM (Ho et al. 2020) in float64 with 0-based timesteps i = 0..T-1, as most code has them."""

    def __init__(self, T=1000, beta_start=1e-4, beta_end=0.02):
        self.T = T
        self.betas = np.linspace(beta_start, beta_end, T)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # log beta_tilde_1 = -inf: clipped to log beta_tilde_2 (improved DDPM)
        self.posterior_log_variance = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.coef_x0 = self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.coef_xt = (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)

    @staticmethod
    def at(table, i, x):
        """table[i], one value per example, broadcast over the data dimensions of x."""
        return table[i].reshape((-1,) + (1,) * (x.ndim - 1))

    def q_mean_variance(self, x0, i):
        var = self.at(1.0 - self.alphas_cumprod, i, x0) * np.ones_like(x0)
        return self.at(np.sqrt(self.alphas_cumprod), i, x0) * x0, var, np.log(var)

    def q_sample(self, x0, i, noise):
        return self.at(np.sqrt(self.alphas_cumprod), i, x0) * x0 + self.at(np.sqrt(1 - self.alphas_cumprod), i,
                                                                            x0) * noise

    def x0_from_eps(self, xt, i, eps):
        return (xt - self.at(np.sqrt(1 - self.alphas_cumprod), i, xt) * eps) / self.at(np.sqrt(self.alphas_cumprod),
                                                                                      i, xt)

    def eps_from_x0(self, xt, i, x0):
        return (xt - self.at(np.sqrt(self.alphas_cumprod), i, xt) * x0) / self.at(np.sqrt(1 - self.alphas_cumprod),
                                                                                 i, xt)

    def velocity(self, x0, i, eps):
        return self.at(np.sqrt(self.alphas_cumprod), i, x0) * eps - self.at(np.sqrt(1 - self.alphas_cumprod), i,
                                                                             x0) * x0

    def q_posterior(self, x0, xt, i):
        mean = self.at(self.coef_x0, i, xt) * x0 + self.at(self.coef_xt, i, xt) * xt
        ones = np.ones_like(xt)
        return mean, self.at(self.posterior_variance, i, xt) * ones, self.at(self.posterior_log_variance, i, xt) * ones

    def p_mean_variance(self, eps_pred, xt, i):
        x0_hat = np.clip(self.x0_from_eps(xt, i, eps_pred), -1.0, 1.0)
        mean, var, log_var = self.q_posterior(x0_hat, xt, i)
        return mean, var, log_var, x0_hat

    def p_sample(self, eps_pred, xt, i, rng):
        mean, _, log_var, _ = self.p_mean_variance(eps_pred, xt, i)
        noise = rng.standard_normal(xt.shape)
        nonzero = self.at((np.arange(self.T) > 0).astype(float), i, xt)     # no noise at the last step
        return mean + nonzero * np.exp(0.5 * log_var) * noise

    @staticmethod
    def normal_kl(mean1, log_var1, mean2, log_var2):
        return 0.5 * (-1.0 + log_var2 - log_var1 + np.exp(log_var1 - log_var2)
                      + (mean1 - mean2) ** 2 * np.exp(-log_var2))

    @staticmethod
    def discretized_log_likelihood(x0, mean, log_var):
        """log of the N(mean, e^log_var) mass of each 8-bit bin [x0 - 1/255, x0 + 1/255] (edge bins open)."""
        sd = np.exp(0.5 * log_var)
        cdf_plus = ndtr((x0 + 1 / 255 - mean) / sd)
        cdf_min = ndtr((x0 - 1 / 255 - mean) / sd)
        with np.errstate(divide="ignore"):
            return np.where(x0 < -0.999, np.log(cdf_plus),
                            np.where(x0 > 0.999, np.log(1 - cdf_min), np.log(cdf_plus - cdf_min)))

    def vb_term(self, eps_pred, x0, xt, i):
        """KL(q(x_{t-1}|x_t,x_0) || p) for i > 0, the decoder NLL at i = 0; nats per example."""
        true_mean, _, true_log_var = self.q_posterior(x0, xt, i)
        mean, _, log_var, _ = self.p_mean_variance(eps_pred, xt, i)
        axes = tuple(range(1, x0.ndim))
        kl = self.normal_kl(true_mean, true_log_var, mean, log_var).sum(axis=axes)
        nll = -self.discretized_log_likelihood(x0, mean, log_var).sum(axis=axes)
        return np.where(i == 0, nll, kl)

    def prior(self, x0):
        mean, _, log_var = self.q_mean_variance(x0, np.full(len(x0), self.T - 1))
        return self.normal_kl(mean, log_var, 0.0, 0.0).sum(axis=tuple(range(1, x0.ndim)))

    def training_loss(self, eps_pred, noise):
        return ((noise - eps_pred) ** 2).mean(axis=tuple(range(1, noise.ndim)))

    # sampling with n < T steps: the leading spacing (timesteps n-1..0 times T // n)
    def timesteps(self, n):
        return np.arange(n)[::-1] * (self.T // n)

    def previous(self, n, i):
        """The timestep after i in the sequence of n steps (-1: x_0)."""
        seq = list(self.timesteps(n))
        k = seq.index(i)
        return seq[k + 1] if k + 1 < len(seq) else -1

    def abar(self, i):
        return np.where(i >= 0, self.alphas_cumprod[np.maximum(i, 0)], 1.0)

    def strided_posterior(self, x0, xt, i, prev):
        """q(x_prev | x_t, x_0) of the chain that skips from i to prev: beta' = 1 - abar_i / abar_prev."""
        ab, ab_prev = self.at(self.abar(i), np.arange(len(i)), xt), self.at(self.abar(prev), np.arange(len(i)), xt)
        beta = 1 - ab / ab_prev
        mean = np.sqrt(ab_prev) * beta / (1 - ab) * x0 + np.sqrt(ab / ab_prev) * (1 - ab_prev) / (1 - ab) * xt
        return mean, (1 - ab_prev) / (1 - ab) * beta

    def p_sample_strided(self, eps_pred, xt, i, prev, rng):
        x0_hat = np.clip(self.x0_from_eps(xt, i, eps_pred), -1.0, 1.0)
        mean, var = self.strided_posterior(x0_hat, xt, i, prev)
        noise = rng.standard_normal(xt.shape)
        return mean + self.at((prev >= 0).astype(float), np.arange(len(i)), xt) * np.sqrt(var) * noise

    def ddim_step(self, eps_pred, xt, i, prev, eta, rng):
        """Song et al. (2021) eq. 12 with sigma(eta) of eq. 16; eps_hat from the clipped x0_hat."""
        rows = np.arange(len(i))
        ab, ab_prev = self.at(self.abar(i), rows, xt), self.at(self.abar(prev), rows, xt)
        x0_hat = np.clip(self.x0_from_eps(xt, i, eps_pred), -1.0, 1.0)
        eps_hat = (xt - np.sqrt(ab) * x0_hat) / np.sqrt(1 - ab)
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        noise = rng.standard_normal(xt.shape)
        return np.sqrt(ab_prev) * x0_hat + np.sqrt(1 - ab_prev - sigma ** 2) * eps_hat + sigma * noise

    def ddim_invert(self, eps_pred, xs, i_s, i_t):
        """x at i_t from x at i_s < i_t: the eta = 0 step run forward, with the prediction at i_s."""
        rows = np.arange(len(i_s))
        ab_s, ab_t = self.at(self.abar(i_s), rows, xs), self.at(self.abar(i_t), rows, xs)
        x0_hat = np.clip(self.x0_from_eps(xs, i_s, eps_pred), -1.0, 1.0)
        eps_hat = (xs - np.sqrt(ab_s) * x0_hat) / np.sqrt(1 - ab_s)
        return np.sqrt(ab_t) * x0_hat + np.sqrt(1 - ab_t) * eps_hat

    def ddim_sample(self, model, shape, n, eta, rng):
        """The whole DDIM sampler over the timesteps of n steps, from x_T ~ N(0, I)."""
        x = rng.standard_normal(shape)
        for i in self.timesteps(n):
            idx = np.full(shape[0], i)
            x = self.ddim_step(model(x, idx), x, idx, np.full(shape[0], self.previous(n, i)), eta, rng)
        return x

    def bound(self, model, x0, rng):
        """The negative ELBO by the closed-form KLs, with one forward sample per t, in nats."""
        terms, noises = [], []
        for i in reversed(range(self.T)):
            idx = np.full(len(x0), i)
            noise = rng.standard_normal(x0.shape)
            xt = self.q_sample(x0, idx, noise)
            terms.append(self.vb_term(model(xt), x0, xt, idx))
            noises.append(noise)
        terms, noises = np.stack(terms[::-1], axis=1), np.stack(noises[::-1])
        prior = self.prior(x0)
        return {"total": terms.sum(axis=1) + prior, "prior": prior, "terms": terms, "eps": noises}


# -- the adapter: what `ddpm-verify check` calls (paper t = 1..T in, nats out) ------------------------

class Target:
    name = "NumpyDDPM (template)"
    version = "template"
    unit_roundoff = 2.0 ** -53            # float64 arithmetic (2**-24 for float32 code)
    data_shape = (4,)                     # one example; images: (C, H, W)
    prediction_type = "epsilon"           # epsilon, sample, v_prediction or previous_x
    variance_type = "fixed_small"         # fixed_small, fixed_large, learned_range, learned_log_variance, ...
    clip_sample = True                    # x0_hat clipped to [-1, 1] before the posterior mean
    log_variance_at_1 = "clipped"         # how log beta_tilde_1 = -inf is kept: clipped, floor, -inf, absent
    decoder = "discretized"               # the t = 1 term: discretized (8-bit data) or continuous
    normal_cdf = "exact"                  # exact, or tanh for the usual approximation
    loss_target = "epsilon"               # what the training loss regresses on
    step_counts = (10, 30, 37, 50)        # samplers with fewer steps: the counts to check
    timestep_rule = "leading"             # their timesteps: leading, linspace, trailing, ...
    etas = (0.0, 0.5, 1.0)                # DDIM's eta values to check
    operations = ("betas", "alpha_bar", "q_mean", "q_variance", "q_log_variance", "q_sample",
                  "q_sample_random", "velocity", "x0_from_eps", "eps_from_x0", "posterior_mean",
                  "posterior_variance", "posterior_log_variance", "previous_t", "predict_x0", "p_mean",
                  "p_variance", "p_log_variance", "reverse_step", "vlb_term", "prior_term", "total_bpd",
                  "training_loss", "timesteps", "strided_previous_t", "respaced_betas", "model_timestep",
                  "strided_step", "strided_variance", "ddim_step", "ddim_invert", "ddim_loop")

    def __init__(self, ddpm=None):
        self.ddpm = ddpm if ddpm is not None else NumpyDDPM()

    def reference_schedule(self):
        """The schedule the code claims: `reference.linear`, `cosine`, `scaled_linear`, `sigmoid`,
        `zero_terminal_snr(...)` or `reference.Schedule(betas)`."""
        return reference.linear(self.ddpm.T)

    # schedule tables, t = 1..T
    def betas(self):
        return self.ddpm.betas

    def alpha_bar(self):
        return self.ddpm.alphas_cumprod

    # the forward process
    def q_mean(self, x0, t):
        return self.ddpm.q_mean_variance(x0, t - 1)[0]

    def q_variance(self, x0, t):
        return self.ddpm.q_mean_variance(x0, t - 1)[1]

    def q_log_variance(self, x0, t):
        return self.ddpm.q_mean_variance(x0, t - 1)[2]

    def q_sample(self, x0, t, eps):
        return self.ddpm.q_sample(x0, t - 1, eps)

    def q_sample_random(self, x0, t, seed):
        return self.ddpm.q_sample(x0, t - 1, np.random.default_rng(seed).standard_normal(x0.shape))

    # parameterisations
    def velocity(self, x0, t, eps):
        return self.ddpm.velocity(x0, t - 1, eps)

    def x0_from_eps(self, xt, t, eps):
        return self.ddpm.x0_from_eps(xt, t - 1, eps)

    def eps_from_x0(self, xt, t, x0):
        return self.ddpm.eps_from_x0(xt, t - 1, x0)

    # the posterior q(x_{t-1} | x_t, x_0)
    def posterior_mean(self, x0, xt, t):
        return self.ddpm.q_posterior(x0, xt, t - 1)[0]

    def posterior_variance(self, x0, xt, t):
        return self.ddpm.q_posterior(x0, xt, t - 1)[1]

    def posterior_log_variance(self, x0, xt, t):
        return self.ddpm.q_posterior(x0, xt, t - 1)[2]

    # the reverse model p(x_{t-1} | x_t) from a given model output, and one step
    def previous_t(self, t):
        return t - 1

    def predict_x0(self, model_output, xt, t):
        return self.ddpm.p_mean_variance(model_output, xt, t - 1)[3]

    def p_mean(self, model_output, xt, t):
        return self.ddpm.p_mean_variance(model_output, xt, t - 1)[0]

    def p_variance(self, model_output, xt, t):
        return self.ddpm.p_mean_variance(model_output, xt, t - 1)[1]

    def p_log_variance(self, model_output, xt, t):
        return self.ddpm.p_mean_variance(model_output, xt, t - 1)[2]

    def reverse_step(self, model_output, xt, t, seed):
        """(x_{t-1}, the standard normal noise the step drew, regenerated from the same seed)."""
        prev = self.ddpm.p_sample(model_output, xt, t - 1, np.random.default_rng(seed))
        return prev, np.random.default_rng(seed).standard_normal(xt.shape)

    # likelihood terms (nats per example) and the training loss
    def vlb_term(self, model_output, x0, xt, t):
        return self.ddpm.vb_term(model_output, x0, xt, t - 1)

    def prior_term(self, x0):
        return self.ddpm.prior(x0)

    def total_bpd(self, model_fn, x0, seed):
        return self.ddpm.bound(model_fn, x0, np.random.default_rng(seed))

    def training_loss(self, model_output, x0, t, eps):
        return self.ddpm.training_loss(model_output, eps)


    # samplers with n < T steps (paper t in, the step from t goes to the next timestep s; 0 is x_0)
    def timesteps(self, n):
        return self.ddpm.timesteps(n) + 1

    def strided_previous_t(self, n, t):
        return self.ddpm.previous(n, t - 1) + 1

    def _previous(self, n, t):
        return np.array([self.ddpm.previous(n, k - 1) for k in t])

    def respaced_betas(self, n):
        kept = self.ddpm.timesteps(n)[::-1]
        abar = self.ddpm.alphas_cumprod[kept]
        return 1 - abar / np.append(1.0, abar[:-1])

    def model_timestep(self, n, t):
        return t                          # a respacing wrapper would map its index back here

    def strided_step(self, n, model_output, xt, t, seed):
        prev = self.ddpm.p_sample_strided(model_output, xt, t - 1, self._previous(n, t), np.random.default_rng(seed))
        return prev, np.random.default_rng(seed).standard_normal(xt.shape)

    def strided_variance(self, n, model_output, xt, t):
        return self.ddpm.strided_posterior(xt, xt, t - 1, self._previous(n, t))[1]

    def ddim_step(self, n, model_output, xt, t, eta, seed):
        prev = self.ddpm.ddim_step(model_output, xt, t - 1, self._previous(n, t), eta, np.random.default_rng(seed))
        return prev, np.random.default_rng(seed).standard_normal(xt.shape)

    def ddim_invert(self, n, model_output, xs, t):
        return self.ddpm.ddim_invert(model_output, xs, self._previous(n, t), t - 1)


    def ddim_loop(self, n, model_fn, rows, eta, seed):
        """The whole sampler with the network model_fn(x_t): what the network saw, the noise each
        step drew (regenerated: the loop draws x_T, then one normal array per step), and x_0."""
        seen = []

        def model(x, i):
            seen.append((i[0] + 1, x.copy()))
            return model_fn(x)
        shape = (rows, *self.data_shape)
        x0 = self.ddpm.ddim_sample(model, shape, n, eta, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        rng.standard_normal(shape)
        z = np.stack([rng.standard_normal(shape) for _ in seen])
        return {"t": np.array([t for t, _ in seen]), "x": np.stack([x for _, x in seen]), "z": z, "x0": x0}


def make_target():
    """What `ddpm-verify check my_target:make_target` calls."""
    return Target()
