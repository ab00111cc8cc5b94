"""Third-party implementations against the reference (ddpm_verify.conformance).

Stock diffusers DDPMScheduler configurations and guided-diffusion GaussianDiffusion objects
(every mean, variance and loss type) whose math is right must pass every check; the real bug
of diffusers' variance_type="fixed_large_log" (step takes the square root of a log-variance,
giving NaN) must be reported; the tanh normal CDF of guided-diffusion's decoder must be a
precision note, not a failure; and `ddpm-verify check` must exit 0 / 1 / 2 accordingly.
"""

import itertools
import json
import os
import sys
import textwrap
import warnings

import pytest

from ddpm_verify import conformance
from ddpm_verify.cli import main
from ddpm_verify.targets import TargetError, resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

CORRECT = [
    "diffusers",
    "diffusers[clip_sample=false]",
    "diffusers[variance_type=fixed_large]",
    "diffusers[variance_type=fixed_small_log]",
    "diffusers[variance_type=learned_range]",
    "diffusers[variance_type=learned,prediction_type=sample,clip_sample=false]",
    "diffusers[prediction_type=v_prediction,clip_sample=false]",
    "diffusers[prediction_type=sample]",
    "diffusers[beta_schedule=squaredcos_cap_v2]",
    "diffusers[beta_schedule=scaled_linear,beta_start=0.00085,beta_end=0.012]",
    "diffusers[beta_schedule=sigmoid]",
    "diffusers[rescale_betas_zero_snr=true,prediction_type=v_prediction]",
    "diffusers[num_train_timesteps=50]",
]


@pytest.mark.parametrize("spec", CORRECT)
def test_correct_diffusers_configuration_passes(spec):
    results = conformance.run(resolve(spec))
    failed = [f"{r.name}: {r.detail}" for r in results if r.status == "fail"]
    assert not failed, failed
    assert sum(r.status == "pass" for r in results) >= 5


MEAN_TYPES = ("epsilon", "start_x", "previous_x")
VAR_TYPES = ("fixed_small", "fixed_large", "learned", "learned_range")
LOSS_TYPES = ("mse", "rescaled_mse", "kl", "rescaled_kl")
GUIDED = [f"guided-diffusion[mean_type={m},var_type={v},loss_type={LOSS_TYPES[i % 4]}]"
          for i, (m, v) in enumerate(itertools.product(MEAN_TYPES, VAR_TYPES))] + [
    "guided-diffusion",
    "guided-diffusion[schedule=cosine,var_type=learned_range,loss_type=rescaled_mse]",
    "guided-diffusion[schedule=cosine,steps=4000,mean_type=start_x,loss_type=kl]",
    "guided-diffusion[steps=100,clip_denoised=false]",
]


@pytest.mark.parametrize("spec", GUIDED)
def test_correct_guided_diffusion_configuration_passes(spec):
    target = resolve(spec)
    results = conformance.run(target)
    failed = [f"{r.name}: {r.detail}" for r in results if r.status == "fail"]
    assert not failed, failed
    assert {r.name.split(" (")[0] for r in results if r.status in ("pass", "note")} >= {
        "schedule: abar_t", "posterior: mean, variance, log-variance", "reverse: step", "likelihood: prior term L_T",
        "likelihood: total bound", "loss: training loss"}, [r.name for r in results]


def test_tanh_cdf_is_a_precision_note_with_its_measured_size():
    """guided-diffusion's decoder uses a tanh approximation of the normal CDF: beyond the float32
    budget, within the approximation's, so a note that states the size."""
    results = {r.name: r for r in conformance.run(resolve("guided-diffusion"))}
    vlb = results["likelihood: VLB terms L_{t-1} and decoder NLL (nats)"]
    assert vlb.status == "note" and "tanh approximation" in vlb.detail and vlb.worst_error > vlb.tolerance, vlb


def test_json_report_has_target_version_seed_and_every_check(tmp_path):
    path = tmp_path / "report.json"
    assert main(["check", "guided-diffusion", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["target"].startswith("GaussianDiffusion(") and report["version"].startswith("guided-diffusion-sdk")
    assert report["seed"] == conformance.SEED
    assert len(report["results"]) == len(conformance.CHECKS)
    assert {"name", "status", "worst_error", "tolerance", "budget_used", "detail"} <= set(report["results"][0])


def test_fixed_large_log_step_is_reported():
    results = {r.name.split(" (")[0]: r for r in conformance.run(
        resolve("diffusers[variance_type=fixed_large_log,clip_sample=false]"))}
    step = results["reverse: step"]
    assert step.status == "fail" and "nan" in step.detail.lower(), step


@pytest.fixture
def target_module(tmp_path, monkeypatch):
    (tmp_path / "my_targets.py").write_text(textwrap.dedent("""
        from diffusers import DDPMScheduler
        def flls():
            return DDPMScheduler(variance_type="fixed_large_log", clip_sample=False)
        stock = DDPMScheduler()
        from guided_diffusion.script_util import create_gaussian_diffusion
        def gaussian_diffusion():
            return create_gaussian_diffusion(learn_sigma=True, use_kl=True)
        def broken():
            raise RuntimeError("cannot build")
        not_a_target = 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_targets", None)


@pytest.mark.parametrize("spec, status", [("my_targets:stock", 0), ("my_targets:flls", 1),
                                          ("my_targets:gaussian_diffusion", 0), ("guided-diffusion[steps=2]", 2),
                                          ("guided-diffusion[var_type=wide]", 2), ("guided-diffusion[colour=red]", 2),
                                          ("my_targets:broken", 2), ("my_targets:not_a_target", 2),
                                          ("my_targets:missing", 2), ("no_such_module_xyz:thing", 2),
                                          ("diffusers[beta_schedule=bogus]", 2), ("diffusers[oops]", 2)])
def test_check_exit_status(target_module, spec, status, capsys):
    assert main(["check", spec]) == status
    if status == 2:
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ddpm-verify: error:"), err


def test_unknown_builtin_names_the_choices():
    with pytest.raises(TargetError, match="reference, diffusers"):
        resolve("guided")
    with pytest.raises(TargetError, match="DDPMScheduler-like.*GaussianDiffusion-like"):
        from ddpm_verify.targets import adapt
        adapt(42, "x:y")
