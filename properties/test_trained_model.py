"""The small trained DDPM (`ddpm_verify.model`): the shipped checkpoint verified end to end by
`ddpm-verify verify-model`, the loss-code check shown to catch broken loss code, checkpoints that
cannot be used rejected with a clear error, and a short training run (the smoke test).

The verification runs once, as the command a user runs (`ddpm-verify verify-model --json --plots`,
by the console script's `main` in this process, so torch is imported once); each test below reads
its part of the report. Its statistical checks carry the false-fail rates
of `ddpm_verify.model.verify.RATES` (1e-6 each; 1e-2 for the one-sided gap bar) at a fixed seed.
"""

import contextlib
import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import norm

import reference as ref
from ddpm_verify import cli
from ddpm_verify.model import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    TrainConfig,
    load,
    losses,
    save,
)
from ddpm_verify.model.loss_check import check_loss_code, loss_battery
from ddpm_verify.model.sampler import ancestral_sample
from ddpm_verify.model.train import train
from ddpm_verify.model.verify import (
    EPS_MSE_BAR,
    GAP_BAR,
    RATES,
    control_variate_coefficients,
    elbo_control_variate,
    eps_errors,
)
from reference.conventions import Variance

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, its module fixtures once
pytestmark = pytest.mark.xdist_group("trained_model")

torch.set_num_threads(1)        # 2-core machines: one torch thread (DESIGN.md, "Machines")


def run_cli(*args) -> SimpleNamespace:
    """`ddpm-verify ARGS` by the console script's `main`, in this process: its returncode, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:                  # argparse's own usage errors
            code = exc.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """`ddpm-verify verify-model --json --plots` on the shipped checkpoint: (process, report, plot dir)."""
    out = tmp_path_factory.mktemp("verify_model")
    proc = run_cli("verify-model", "--json", out / "report.json", "--plots", out / "plots")
    assert (out / "report.json").exists(), f"no report written; exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads((out / "report.json").read_text()), out / "plots"


def check(report, prefix):
    found = [c for c in report["checks"] if c["name"].startswith(prefix)]
    assert len(found) == 1, f"expected one check named {prefix!r}; got {[c['name'] for c in report['checks']]}"
    return found[0]


# -- the shipped checkpoint, verified -----------------------------------------------------------

def test_verify_model_passes_and_writes_the_report_contract(verified):
    proc, report, _ = verified
    assert proc.returncode == 0, f"verify-model exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    for key in ("neg_elbo_nats", "data_entropy_nats", "eps_relative_mse"):
        assert isinstance(report[key], float) and math.isfinite(report[key]), key
    assert report["variance"] == "fixed_large" and report["T"] == 1000
    assert len(report["checks"]) == 9
    for c in report["checks"]:
        assert set(c) >= {"name", "passed", "detail"} and isinstance(c["passed"], bool), c
    assert all(c["passed"] for c in report["checks"]) and report["passed"]
    assert len(report["eps_relative_mse_per_t"]) == 1000 and len(report["vlb_terms_nats"]) == 1001


@pytest.mark.parametrize("prefix", [
    "loss code vs reference",                                          # a
    "eps relative MSE", "orthogonality of the eps error",              # b
    "KL-form and trajectory estimators agree", "ELBO's network part",  # c
    "-ELBO >= H(data)", "gap -ELBO - H",                               # d
    "samples vs data", "mixture weights recovered",                    # e
])
def test_each_check_of_the_shipped_checkpoint_passes(verified, prefix):
    c = check(verified[1], prefix)
    assert c["passed"], f"{c['name']}: {c['detail']}"


def test_quality_bar_of_the_shipped_checkpoint(verified):
    """Gap -ELBO - H <= 0.1 nats per example (here the one-sided upper bound at rate 1e-2, checked
    in the report), and the relative MSE of eps_theta against eps* <= 5 % averaged over t >= T/20."""
    r = verified[1]
    assert r["gap_nats"] == pytest.approx(r["neg_elbo_nats"] - r["data_entropy_nats"], abs=1e-12)
    assert r["gap_nats"] + norm.isf(RATES["gap bar"]) * r["gap_se"] <= GAP_BAR, (r["gap_nats"], r["gap_se"])
    assert r["eps_relative_mse"] <= EPS_MSE_BAR
    assert 0 <= r["gap_network_part_nats"] < r["gap_nats"] + 3 * r["gap_se"]


def test_plots_are_written(verified):
    plots = verified[2]
    for name in ("vlb_terms.png", "eps_error.png", "score_fields.png", "samples.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{name}: {len(data)} bytes"


def test_the_elbo_control_variate_is_the_estimators_own_noise():
    """With eps_theta = 0 the KL-form estimator's t-th term is lambda_t ||eps_t||^2 plus a constant, so
    on equal rows of x_0 its values less the control variate (coefficients 1) agree to rounding:
    the variate regenerates the estimator's noise. The fitted coefficients are then, per t, the
    variance of ||eps||^2 over check b's draws divided by its exact variance 2d."""
    schedule, mixture = ref.linear(1000), ref.GaussianMixture.ring(8, 1.0, 0.1)
    zero = lambda xt, t: np.zeros_like(xt)  # noqa: E731
    x0 = np.tile(mixture.sample(np.random.default_rng(0), 1), (8, 1))
    model = ref.eps_model(schedule, zero, Variance.FIXED_LARGE)
    est = ref.neg_elbo_kl_estimator(schedule, model, x0, np.random.default_rng(5)).per_sample_nats
    cv = elbo_control_variate(schedule, 5, 8, 2, np.ones(schedule.T))
    assert np.std(cv) > 1.0                                           # the noise is there ...
    assert np.ptp(est - cv) <= 1e-10 * np.max(np.abs(est))            # ... and gone, to rounding
    err = eps_errors(zero, mixture, schedule, 16, np.random.default_rng(6))
    noise_sq = err["draws"]["noise_sq"].reshape(schedule.T, 16)
    assert np.allclose(control_variate_coefficients(err, 2), np.var(noise_sq, axis=1) / 4, rtol=1e-12, atol=0)


def test_shipped_checkpoint_loads_with_weights_only_and_records_provenance():
    raw = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    prov = raw["provenance"]
    for key in ("device", "device_name", "steps", "seed", "wall_time_s", "torch", "numpy", "python", "ddpm_verify"):
        assert key in prov, key
    assert prov["steps"] == raw["config"]["steps"] and prov["seed"] == raw["config"]["seed"]
    assert raw["loss_log"]["step"][-1] == prov["steps"]


#: float32 unit roundoff
U32 = 2.0 ** -24


@pytest.mark.parametrize("batch", ["every t, shuffled", "one t"])
def test_the_evaluation_path_computes_the_training_function(batch):
    """EpsMLP.evaluate (taken when gradients are off: time features once per distinct t, addmm,
    EVAL_ROWS rows per pass) and forward with gradients (the training arithmetic) give the same
    eps_theta on the shipped checkpoint, over several passes' worth of rows and x_t ~ N(0, 2^2).
    They differ only in the order of float32 additions: each of the 2 depth + 2 products of up to
    128 terms errs by at most 128 U32 of its terms' magnitudes (O(1) after LayerNorm), so the
    outputs differ by at most (2 depth + 2) 128 U32 times the network's gain (measured: 1.4e-6 at
    every t); a path that dropped a bias or took the wrong row's time features is off by 1e-2 or more."""
    net, T = load().net, load().config.T
    gen = torch.Generator().manual_seed(11)
    t = torch.randperm(T, generator=gen).repeat(5) + 1 if batch == "every t, shuffled" else torch.full((5000,), 17)
    x = 2 * torch.randn(t.numel(), net.d, generator=gen)
    assert t.numel() > 2 * net.EVAL_ROWS
    with torch.no_grad():
        fast = net(x, t)
    with torch.enable_grad():
        slow = net(x, t).detach()
    tol = (2 * len(net.blocks) + 2) * 128 * U32 * (1 + slow.abs())
    worst = float(((fast - slow).abs() / tol).max())
    assert worst <= 1, f"evaluation path vs training path: worst |diff| / tol = {worst:.3g} ({batch})"


# -- check a has teeth: broken loss code fails it -----------------------------------------------

def _swap_kl(m1, lv1, m2, lv2):
    return ORIGINAL["normal_kl"](m2, lv2, m1, lv1)


ORIGINAL = {name: getattr(losses, name) for name in ("normal_kl", "normal_nll", "q_sample", "model_mean",
                                                      "to_bits_per_dim", "prior_term", "l_simple")}
MUTANTS = {
    "KL arguments swapped": ("normal_kl", _swap_kl),
    "KL without the 1/2": ("normal_kl", lambda m1, lv1, m2, lv2: 2 * ORIGINAL["normal_kl"](m1, lv1, m2, lv2)),
    "KL with a standard deviation for the variance": (
        "normal_kl", lambda m1, lv1, m2, lv2: ORIGINAL["normal_kl"](m1, lv1 / 2, m2, lv2 / 2)),
    "decoder without log 2 pi": ("normal_nll", lambda x, m, lv: ORIGINAL["normal_nll"](x, m, lv) - losses.LOG_2PI / 2),
    "q_sample with 1 - abar for its square root": (
        "q_sample", lambda tab, x0, t, eps: tab.sqrt_alpha_bar[t][:, None] * x0
        + tab.sqrt_one_minus_alpha_bar[t][:, None] ** 2 * eps),
    "mu_theta with beta_t / (1 - abar_t)": (
        "model_mean", lambda tab, xt, t, e: tab.inv_sqrt_alpha[t][:, None]
        * (xt - (tab.eps_coef[t] / tab.sqrt_one_minus_alpha_bar[t])[:, None] * e)),
    "bits as nats / (d log 10)": ("to_bits_per_dim", lambda nats, d: nats / (d * math.log(10.0))),
    "L_T without the constant": ("prior_term", lambda tab, x0: 0.5 * tab.alpha_bar_T * torch.sum(x0 ** 2, dim=-1)),
    "L_simple as a mean over dimensions": ("l_simple", lambda eps, e: torch.mean((eps - e) ** 2, dim=-1)),
}


@pytest.fixture(scope="module")
def shipped():
    return load()


@pytest.fixture(scope="module")
def battery(shipped):
    return loss_battery(shipped.config.mixture(), shipped.config.T, np.random.default_rng(7))


def test_loss_code_check_passes_on_the_loss_code(shipped, battery):
    result, parts = check_loss_code(shipped.net, shipped.tables, shipped.config.reference_schedule(), *battery)
    assert result.status == "pass", result.detail
    # every part used a measurable share of its float32 budget: the budgets are not loose by orders
    assert all(0.01 < p.budget_used <= 1 for p in parts), [(p.name, p.budget_used) for p in parts]


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_loss_code_check_catches_broken_loss_code(shipped, battery, monkeypatch, mutant):
    name, broken = MUTANTS[mutant]
    monkeypatch.setattr(losses, name, broken)
    result, parts = check_loss_code(shipped.net, shipped.tables, shipped.config.reference_schedule(), *battery)
    assert result.status == "fail", f"{mutant} not caught: {[(p.name, p.status, p.budget_used) for p in parts]}"


# -- checkpoints that cannot be used ------------------------------------------------------------

def _bad_checkpoints(tmp_path):
    raw = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all" * 10)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save({**raw, "config": {**raw["config"], "hidden": 64}}, tmp_path / "mismatched.pt")
    torch.save({**raw, "config": {**raw["config"], "layers": 3}}, tmp_path / "unknown_key.pt")
    torch.save({**raw, "format_version": 99}, tmp_path / "future.pt")
    truncated = DEFAULT_CHECKPOINT.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(truncated[: len(truncated) // 2])
    return {"missing.pt": "does not exist", "garbage.pt": "cannot be read", "truncated.pt": "cannot be read",
            "foreign.pt": "not a ddpm-verify model checkpoint", "mismatched.pt": "do not fit its config",
            "unknown_key.pt": "unknown ['layers']", "future.pt": "format_version 99"}


def test_unusable_checkpoints_raise_a_clear_error(tmp_path):
    for name, reason in _bad_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as exc:
            load(tmp_path / name)
        assert str(tmp_path / name) in str(exc.value) and reason in str(exc.value), str(exc.value)


def test_verify_model_on_an_unusable_checkpoint_exits_two_with_one_line(tmp_path):
    _bad_checkpoints(tmp_path)
    for name in ("missing.pt", "truncated.pt", "mismatched.pt"):
        proc = run_cli("verify-model", tmp_path / name)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert err[0].startswith("ddpm-verify: error: checkpoint") and name in err[0]


# -- training -----------------------------------------------------------------------------------

def test_train_smoke(tmp_path):
    """`ddpm-verify train` for 300 steps of batch 256 on the CPU (about 2 s): a checkpoint that loads
    with weights_only=True, with its provenance and the options given; the loss falls; the loss
    code passes check a."""
    out = tmp_path / "smoke.pt"
    proc = run_cli("train", "--steps", 300, "--warmup", 50, "--batch", 256, "--log-every", 100, "--no-progress",
                   "-o", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step 300/300" in proc.stdout and f"saved {out}" in proc.stdout
    raw = torch.load(out, weights_only=True)
    prov = raw["provenance"]
    assert prov["device"] == ("cuda" if torch.cuda.is_available() else "cpu") and prov["steps"] == 300
    assert prov["seed"] == 0 and prov["wall_time_s"] > 0 and prov["torch"] == str(torch.__version__)
    assert raw["config"]["batch"] == 256 and raw["config"]["warmup"] == 50
    losses_logged = raw["loss_log"]["loss"]
    assert raw["loss_log"]["step"] == [100, 200, 300] and losses_logged[-1] < losses_logged[0]
    model = load(out)
    result, _ = check_loss_code(model.net, model.tables, model.config.reference_schedule(),
                                *loss_battery(model.config.mixture(), model.config.T, np.random.default_rng(1), 1))
    assert result.status == "pass", result.detail


def test_training_is_seeded():
    cfg = TrainConfig(steps=20, warmup=5, hidden=32, depth=1, emb_dim=16, batch=64)
    a, b = (train(cfg, device="cpu", progress=False, log_every=20) for _ in range(2))
    c = train(TrainConfig(**{**cfg.to_dict(), "seed": 1}), device="cpu", progress=False, log_every=20)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert any(not torch.equal(v, c["state_dict"][k]) for k, v in a["state_dict"].items())


@pytest.mark.parametrize("argv, words", [
    (["--steps", "0"], "steps must be an integer >= 1"),
    (["--lr", "-1"], "lr must be a number > 0"),
    (["--schedule", "quadratic"], "schedule must be one of"),
    (["--device", "tpu"], "device must be cpu, cuda or cuda:N"),
    (["-o", "/no/such/dir/x.pt"], "directory /no/such/dir does not exist"),
])
def test_train_rejects_bad_options_with_one_line(argv, words):
    proc = run_cli("train", *argv)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and words in err[0], proc.stderr


def test_save_refuses_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        save({}, tmp_path)


# -- the sampler --------------------------------------------------------------------------------

def test_sampler_with_the_exact_eps_star_reproduces_a_gaussian():
    """Data N(0, s^2 I): eps*(x_t) = sqrt(1 - abar_t) x_t / (abar_t s^2 + 1 - abar_t) is linear, so
    with it the fixed-small chain's output is Gaussian with a variance computed exactly by
    propagating N(0, 1) down the chain (docs/math.md §7's linear-Gaussian oracle); compare the sample
    variance with it. Statistics: n = 20 000 float32 draws per dimension; the sample variance of a
    Gaussian has relative se sqrt(2 / n) = 0.01, so a 6-se band (rate ~2e-9) is 6 %; the shape
    [float32 rounding over 50 steps, < 1e-5 relative] is negligible."""
    s2, T = 0.04, 50
    schedule = ref.linear(T, scale_with_T=True)
    tab = losses.Tables.from_schedule(schedule)
    ab, om = schedule.alpha_bar(), schedule.one_minus_alpha_bar()

    class Exact(torch.nn.Module):
        def forward(self, xt, t):
            k = torch.tensor(np.sqrt(om) / (ab * s2 + om), dtype=torch.float32)[t - 1]
            return k[:, None] * xt

    sigma2 = np.exp(schedule.log_beta_tilde_clipped())
    want_mean, want_var = ref.LinearGaussianChain(schedule, *_linear_chain(schedule, s2), sigma2).marginal_x0()
    want_var -= sigma2[0]             # the sampler returns the mean of p(x_0 | x_1): no decoder noise
    x = ancestral_sample(Exact(), tab, 20_000, 2, variance="fixed_small",
                         generator=torch.Generator().manual_seed(3)).double().numpy()
    var = x.var(axis=0, ddof=1)
    assert np.all(np.abs(var / want_var - 1) < 6 * math.sqrt(2 / 20_000)), (var, want_var)
    assert np.all(np.abs(x.mean(axis=0) - want_mean) < 6 * math.sqrt(want_var / 20_000)), x.mean(axis=0)


def _linear_chain(schedule, s2):
    """a_t, b_t of mu_theta = a_t x_t + b_t for the linear eps* of N(0, s2 I) data (b_t = 0)."""
    ab, om, beta, alpha = (schedule.alpha_bar(), schedule.one_minus_alpha_bar(), schedule.beta(), schedule.alpha())
    k = np.sqrt(om) / (ab * s2 + om)
    a = (1 - beta / np.sqrt(om) * k) / np.sqrt(alpha)
    return a, np.zeros((schedule.T, 2))


@pytest.mark.parametrize("kwargs, words", [({"n": 0}, "n must be an integer >= 1"),
                                           ({"n": 4, "variance": "learned"}, "variance must be one of")])
def test_sampler_rejects_bad_arguments(shipped, kwargs, words):
    with pytest.raises(ValueError, match=words):
        ancestral_sample(shipped.net, shipped.tables, d=2, **{"n": 4, **kwargs})
