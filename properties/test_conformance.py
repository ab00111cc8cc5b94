"""Third-party implementations against the reference (ddpm_verify.conformance).

Stock diffusers DDPMScheduler configurations whose math is right must pass every check;
the real bug of variance_type="fixed_large_log" (step takes the square root of a log-variance,
giving NaN) must be reported; and `ddpm-verify check` must exit 0 / 1 / 2 accordingly.
"""

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
        def broken():
            raise RuntimeError("cannot build")
        not_a_target = 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_targets", None)


@pytest.mark.parametrize("spec, status", [("my_targets:stock", 0), ("my_targets:flls", 1),
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
