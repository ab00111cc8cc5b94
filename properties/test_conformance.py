"""Third-party implementations against the reference (ddpm_verify.conformance).

Stock diffusers DDPMScheduler configurations (thresholding included, on image-shaped data)
and guided-diffusion GaussianDiffusion objects (every mean, variance and loss type, vectors and
images, and the SpacedDiffusion that create_gaussian_diffusion returns) whose math is right must
pass every check; the real bug of diffusers' variance_type="fixed_large_log" (step takes the
square root of a log-variance, giving NaN) must be reported at every timestep it hits; the
tanh normal CDF of guided-diffusion's decoder must be a precision note, not a failure; and
`ddpm-verify check` must exit 0 / 1 / 2 accordingly.
"""

import itertools
import json
import os
import sys
import textwrap
import warnings

import diffusers
import pytest

import ddpm_verify
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
    "diffusers[thresholding=true]",
    "diffusers[thresholding=true,sample_max_value=2.0,prediction_type=v_prediction]",
    "diffusers[thresholding=true,dynamic_thresholding_ratio=0.9,sample_max_value=1.5,variance_type=learned_range]",
    "diffusers[data_shape=4]",
]


@pytest.mark.parametrize("spec", CORRECT)
def test_correct_diffusers_configuration_passes(spec):
    results = conformance.run(resolve(spec))
    failed = [f"{r.name}: {r.detail}" for r in results if r.status == "fail"]
    assert not failed, failed
    assert sum(r.status == "pass" for r in results) >= 5


SAMPLERS = [
    "diffusers-ddim",
    "diffusers-ddim[set_alpha_to_one=false,prediction_type=sample,clip_sample=false]",
    "diffusers-ddim[prediction_type=v_prediction,rescale_betas_zero_snr=true]",
    "diffusers-ddim[thresholding=true,sample_max_value=2.0,beta_schedule=squaredcos_cap_v2]",
    "diffusers-ddim[steps_offset=1,num_inference_steps=50]",
    "diffusers-ddim-inverse",
    "diffusers-ddim-inverse[set_alpha_to_one=false,prediction_type=v_prediction]",
    "diffusers[num_inference_steps=50,timestep_spacing=linspace]",
    "diffusers[num_inference_steps=37,timestep_spacing=trailing]",
    "diffusers[num_inference_steps=50,variance_type=fixed_large]",
    "diffusers[num_inference_steps=30,variance_type=learned_range,prediction_type=v_prediction]",
    "guided-diffusion[timestep_respacing=250]",
    "guided-diffusion[timestep_respacing=ddim50,var_type=learned_range]",
    "guided-diffusion[timestep_respacing=10/15/20,schedule=cosine,mean_type=start_x,var_type=fixed_small]",
    "guided-diffusion[timestep_respacing=37,mean_type=previous_x,data_shape=3x4x4]",
    "lucidrains[beta_schedule=linear,objective=pred_noise]",
    "lucidrains[beta_schedule=cosine,objective=pred_v,min_snr_loss_weight=true,sampling_timesteps=50]",
    "lucidrains[beta_schedule=linear,objective=pred_x0,sampling_timesteps=37,ddim_sampling_eta=0.5]",
]


@pytest.mark.parametrize("spec", SAMPLERS)
def test_correct_sampler_with_fewer_steps_passes(spec):
    """Stock samplers of all three libraries, on the step counts they are set to or on the battery
    (10, 30, 37, 50): every applicable check passes, and some sampler check ran."""
    results = conformance.run(resolve(spec))
    failed = [f"{r.name}: {r.detail}" for r in results if r.status in ("fail", "error")]
    assert not failed, failed
    ran = {r.operation for r in results if r.status == "pass"}
    assert ran & {"strided_step", "ddim_step", "ddim_invert", "ddim_loop"}, ran


@pytest.mark.parametrize("spec, check, evidence", [
    ("diffusers-ddim[timestep_spacing=trailing]", "DDIM: step with eta", "t=67 used abar 0.985527 (that of t=34), "
                                                                          "should use abar_s 0.986274 (s=33)"),
    ("diffusers-ddim[timestep_spacing=linspace]", "DDIM: step with eta", "(that of t="),
    ("diffusers-ddim-inverse[timestep_spacing=trailing]", "DDIM: inversion (eta = 0 run forward)", "n=30"),
    ("diffusers[timestep_spacing=trailing,num_inference_steps=61]", "strided: the timesteps each sampler visits",
     "entry 61 of 62, 0, is not a timestep"),
    ("diffusers[num_inference_steps=37,timestep_spacing=trailing,variance_type=fixed_large]",
     "strided: DDPM step on the respaced chain", "worst at t=27"),
    ("lucidrains", "schedule: beta_t", "worst at t=999"),
    ("diffusers-ddim[steps_offset=1,num_inference_steps=1000]", "strided: the timesteps each sampler visits",
     "entry 0 of 1000, 1001, is not a timestep"),
])
def test_real_bugs_in_samplers_are_reported_with_evidence(spec, check, evidence):
    """diffusers 0.42.1's DDIM steps to t - T // n whatever the spacing; its trailing spacing yields an
    extra timestep -1 for n = 61; its DDPM step adds noise on the step to x_0 when that step does not
    start at t = 1 (trailing spacing) and the variance is not floored to nothing (fixed_large);
    steps_offset = 1 with n = T starts at index T, past the tables (step then raises IndexError);
    lucidrains' sigmoid schedule takes its end points in float32."""
    result = next(r for r in conformance.run(resolve(spec)) if r.name == check)
    assert result.status == "fail" and evidence in result.detail, result.detail


def test_a_stubbed_module_cannot_hide_a_math_failure():
    """lucidrains is imported with stubs of the modules that cannot be imported; any use of a stub
    raises, so a math path through one is an error, not a pass."""
    from ddpm_verify.stubs import stub

    stub = stub("torchvision")
    with pytest.raises(RuntimeError, match="torchvision.transforms.Resize is not installed"):
        stub.transforms.Resize(8)
    with pytest.raises(AttributeError):
        stub.__file__


MEAN_TYPES = ("epsilon", "start_x", "previous_x")
VAR_TYPES = ("fixed_small", "fixed_large", "learned", "learned_range")
LOSS_TYPES = ("mse", "rescaled_mse", "kl", "rescaled_kl")
GUIDED = [f"guided-diffusion[mean_type={m},var_type={v},loss_type={LOSS_TYPES[i % 4]}]"
          for i, (m, v) in enumerate(itertools.product(MEAN_TYPES, VAR_TYPES))] + [
    "guided-diffusion",
    "guided-diffusion[schedule=cosine,var_type=learned_range,loss_type=rescaled_mse]",
    "guided-diffusion[schedule=cosine,steps=4000,mean_type=start_x,loss_type=kl]",
    "guided-diffusion[steps=100,clip_denoised=false]",
    "guided-diffusion[data_shape=3x4x4,var_type=learned_range,loss_type=rescaled_mse]",
    "guided-diffusion[data_shape=2x3x2,mean_type=start_x,loss_type=kl]",
]


@pytest.mark.parametrize("spec", GUIDED)
def test_correct_guided_diffusion_configuration_passes(spec):
    target = resolve(spec)
    results = conformance.run(target)
    failed = [f"{r.name}: {r.detail}" for r in results if r.status == "fail"]
    assert not failed, failed
    assert {r.name for r in results if r.status in ("pass", "note")} >= {
        "schedule: abar_t", "posterior: mean", "posterior: log-variance", "reverse: step",
        "likelihood: prior term L_T (nats)", "likelihood: total bound (nats)", "loss: training loss"}, \
        [(r.name, r.status) for r in results]


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
    assert report["seed"] == ddpm_verify.SEED and report["exit_status"] == 0 and report["data_shape"] == [4]
    assert [r["name"] for r in report["results"][:len(conformance.CHECKS)]] == [c.title for c in conformance.CHECKS]
    assert {r["status"] for r in report["results"][len(conformance.CHECKS):]} == {"convention"}
    assert {"name", "operation", "status", "worst_error", "tolerance", "budget_used", "detail", "where_failed",
            "timesteps", "failed_timesteps", "values", "failures"} <= set(report["results"][0])
    assert report["declaration"]["log_variance_at_1"] == "clipped"


def test_fixed_large_log_step_is_reported_at_every_timestep_it_hits(tmp_path):
    """Every step before the last is NaN: the report lists t = 2, 3, 100, 500, 999, 1000 (6 of the 7
    timesteps) and every NaN value, with what the math gives there."""
    spec = "diffusers[variance_type=fixed_large_log,clip_sample=false]"
    results = {r.name: r for r in conformance.run(resolve(spec))}
    step = results["reverse: step"]
    assert step.status == "fail" and "nan" in step.detail.lower(), step
    assert step.failed_timesteps == [2, 3, 100, 500, 999, 1000] and step.timesteps == [1, 2, 3, 100, 500, 999, 1000]
    assert step.where_failed.startswith("t = 2, 3, 100, 500, 999, 1000 (6 of 7 timesteps;"), step.where_failed
    assert len(step.failures) == 6 * 6 * 48 and all(f.got != f.got and f.expected == f.expected
                                                    for f in step.failures)
    path = tmp_path / "report.json"
    assert main(["check", "diffusers[variance_type=fixed_large_log,clip_sample=false]", "--json", str(path)]) == 1
    listed = next(r for r in json.loads(path.read_text())["results"] if r["name"] == "reverse: step")["failures"]
    assert len(listed) == len(step.failures) and {f["t"] for f in listed} == set(step.failed_timesteps)
    assert listed[0]["got"] == "nan" and isinstance(listed[0]["expected"], float) and listed[0]["tolerance"] > 0


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
    from ddpm_verify.targets import adapt
    with pytest.raises(TargetError, match="DDPMScheduler-like object it lacks add_noise, step, alphas_cumprod, "
                                          "config, _get_variance; .*GaussianDiffusion-like object it lacks "
                                          "q_mean_variance.*protocol .* lacks name, operations"):
        adapt(42, "x:y")


def test_a_spaced_diffusion_of_a_named_schedule_passes_its_betas_check():
    """create_gaussian_diffusion returns a SpacedDiffusion even unrespaced; its betas, recomputed as
    1 - abar_t / abar_{t-1}, are checked against the named schedule with that recomputation
    budgeted (3 float64 ulps each), and it is declared as a convention."""
    from guided_diffusion.script_util import create_gaussian_diffusion

    from ddpm_verify.adapters.guided_diffusion import GuidedDiffusion

    for schedule in ("linear", "cosine"):
        target = GuidedDiffusion(create_gaussian_diffusion(noise_schedule=schedule), schedule=schedule)
        results = {r.name: r for r in conformance.run(target)}
        assert results["schedule: beta_t"].status == "pass" and results["schedule: beta_t"].budget_used > 0.01
        assert results["convention: betas from abar ratios"].status == "convention"
        assert not [r.name for r in results.values() if r.status in ("fail", "error")]


def test_a_stock_target_of_every_kind_reports_the_version_of_its_own_package():
    from guided_diffusion.script_util import create_gaussian_diffusion

    from properties.support.broken_targets import noise_at_final_sample_step

    assert conformance.checked(resolve("diffusers")).version == f"diffusers {diffusers.__version__}"
    assert conformance.checked(create_and_adapt(create_gaussian_diffusion)).version.startswith("guided-diffusion-sdk")
    assert conformance.checked(create_and_adapt(noise_at_final_sample_step)).version == (
        f"ddpm-verify {ddpm_verify.__version__} on {conformance.checked(resolve('guided-diffusion')).version}")


def create_and_adapt(factory):
    from ddpm_verify.targets import adapt
    return adapt(factory(), "factory")
