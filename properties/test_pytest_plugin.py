"""The pytest plugin (ddpm_verify.pytest_plugin): ``--ddpm-impl TARGET`` in a pytest session of its own.

The header names the target, its version and its conventions; a correct target passes (exit
0), a real bug fails (exit 1), a target that raises on valid input is a pytest error (E, not F),
a target that cannot be checked is a one-line usage error (exit 4), and with the reference
properties/test_target.py is not collected (exit 5).

Each session runs in this process, in the checkout's folder (pytest's ``pytester``, which restores
sys.modules, sys.path and the working directory afterwards), so torch and diffusers are imported
once; its statistical verdicts are its own, not this run's (`stats.unobserved`).
"""

from pathlib import Path
from types import SimpleNamespace

import diffusers
import pytest

import ddpm_verify
import ddpm_verify.conformance  # noqa: F401 - imported here, so the sessions below add no module to forget
from ddpm_verify import stats

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_pytest(pytester, monkeypatch):
    """run_pytest(spec): properties/test_target.py against `spec`, at default verbosity (-q hides the
    header): its returncode, stdout and stderr."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(ROOT)                       # node ids as a user in the checkout sees them

    def run(spec: str) -> SimpleNamespace:
        with stats.unobserved():
            # the project's modules are imported already (as under `ddpm-verify check`): not rewritten
            result = pytester.runpytest_inprocess("properties/test_target.py", "--ddpm-impl", spec,
                                                  "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                                                  "-W", "ignore::pytest.PytestAssertRewriteWarning")
        return SimpleNamespace(returncode=int(result.ret), stdout="\n".join(result.outlines),
                               stderr="\n".join(result.errlines))
    return run


def header(proc) -> str:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ddpm-verify target:")]
    assert len(lines) == 1, proc.stdout
    return lines[0]


def test_stock_diffusers_passes(run_pytest):
    proc = run_pytest("diffusers")
    line = header(proc)
    assert line.startswith("ddpm-verify target: DDPMScheduler(") and line.endswith(
        f"(diffusers {diffusers.__version__})"), line
    assert "ddpm-verify convention: t = 1 log-variance: " in proc.stdout
    assert proc.returncode == 0, proc.stdout


def test_a_target_that_raises_is_an_error_not_a_failure(run_pytest):
    proc = run_pytest("properties.support.broken_adapters:raises_at_t_equal_T")
    assert proc.returncode == 1, proc.stdout
    assert "ERROR properties/test_target.py::test_target[q_sample]" in proc.stdout
    assert "q_sample raised IndexError" in proc.stdout and "(t = 1000; 1 of 7 timesteps)" in proc.stdout
    assert "1 error" in proc.stdout and " failed" not in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_fixed_large_log_fails(run_pytest):
    proc = run_pytest("diffusers[variance_type=fixed_large_log,clip_sample=false]")
    assert proc.returncode == 1, proc.stdout
    assert "test_target[reverse_step]" in proc.stdout and "nan" in proc.stdout
    assert "fails at t = 2, 3, 100, 500, 999, 1000 (6 of 7 timesteps;" in proc.stdout


@pytest.mark.parametrize("spec", ["no_such_module_xyz:thing", "properties.support.broken_adapters:missing_method"])
def test_a_target_that_cannot_be_checked_is_one_line_usage_error(run_pytest, spec):
    proc = run_pytest(spec)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    assert len([ln for ln in output.splitlines() if spec in ln]) == 1, output


def test_reference_does_not_collect_test_target(run_pytest):
    proc = run_pytest("reference")
    assert proc.returncode == 5, proc.stdout
    assert "no tests ran" in proc.stdout and "collected 0 items" in proc.stdout
    assert header(proc) == f"ddpm-verify target: reference (float64 reference, ddpm-verify {ddpm_verify.__version__})"
