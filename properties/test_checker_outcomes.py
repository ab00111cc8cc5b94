"""The checker never misleads: each outcome and exit status of `ddpm-verify check`, kept apart.

pass, note, fail, error (the target raised on valid input), skip and convention rows; exit 0 / 1
/ 2 / 3; the runnable template adapter passing every check; broken adapters (raising, wrong
shape, wrong dtype, missing method, missing or inconsistent declaration) and library quirks
(thresholding, an invalid prediction type, a strided or DDIM scheduler, a respaced
SpacedDiffusion, options that change nothing checked) each giving its documented outcome, with
no traceback on the terminal unless asked for.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import pytest

from ddpm_verify import conformance
from ddpm_verify.adapters.protocol import raised_by_us
from ddpm_verify.cli import main
from ddpm_verify.targets import resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

from properties.support import broken_adapters, library_quirks  # noqa: E402 - after the filter

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, so each command below runs once
pytestmark = pytest.mark.xdist_group("checker_outcomes")

TRACEBACK = "Traceback (most recent call last)"
_RUNS: dict[tuple, tuple] = {}


def run_check(spec: str, tmp_path, capsys, *extra: str):
    """(exit status, stdout, stderr, the JSON report or None) of `ddpm-verify check spec`, run once
    per module for each command line (the tests read different parts of the same run)."""
    key = (spec, *extra)
    if key not in _RUNS:
        path = tmp_path / "report.json"
        status = main(["check", spec, "--json", str(path), *extra])
        out, err = capsys.readouterr()
        _RUNS[key] = status, out, err, json.loads(path.read_text()) if path.exists() else None
    return _RUNS[key]


def assert_outcome(spec: str, expected, tmp_path, capsys):
    """The documented outcome: exit status, and the named row's status or the one stderr line."""
    want_status, want = expected
    status, out, err, report = run_check(spec, tmp_path, capsys)
    assert TRACEBACK not in out + err, out + err
    assert status == want_status, (out[-3000:], err)
    if isinstance(want, tuple):
        name, outcome = want
        rows = {r["name"]: r for r in report["results"]}
        assert rows[name]["status"] == outcome, rows[name]
        assert report["exit_status"] == status
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ddpm-verify: error:") and want in lines[0], lines
        assert report is None


@pytest.mark.parametrize("name", list(broken_adapters.EXPECTED))
def test_a_broken_adapter_gives_its_documented_outcome(name, tmp_path, capsys):
    assert_outcome(f"properties.support.broken_adapters:{name}", broken_adapters.EXPECTED[name], tmp_path, capsys)


@pytest.mark.parametrize("spec", list(library_quirks.EXPECTED))
def test_a_library_quirk_gives_its_documented_outcome(spec, tmp_path, capsys):
    assert_outcome(spec, library_quirks.EXPECTED[spec], tmp_path, capsys)


@pytest.fixture
def template_module(tmp_path, monkeypatch, capsys):
    """`ddpm-verify template` saved as my_target.py, importable."""
    assert main(["template"]) == 0
    (tmp_path / "my_target.py").write_text(capsys.readouterr().out)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_target"
    sys.modules.pop("my_target", None)


def test_the_template_adapter_passes_every_check(template_module, tmp_path, capsys):
    status, out, err, report = run_check(f"{template_module}:make_target", tmp_path, capsys)
    assert status == 0 and not err, out
    statuses = {r["name"]: r["status"] for r in report["results"]}
    assert all(statuses[c.title] == "pass" for c in conformance.CHECKS), statuses
    assert out.strip().splitlines()[-1] == (f"PASS: {len(conformance.CHECKS)} passed, 0 with a note, 0 failed, "
                                            "0 errored, 0 skipped; 3 conventions")


@pytest.mark.parametrize("spec, title, outcome", [
    ("ddpm_verify.adapters.template:make_target", "schedule: beta_t", "pass"),
    ("guided-diffusion", "likelihood: VLB terms L_{t-1} and decoder NLL (nats)", "note"),
    ("diffusers[steps_offset=1,thresholding=false,dynamic_thresholding_ratio=0.9]",
     "option dynamic_thresholding_ratio=0.9", "note"),
    ("diffusers[variance_type=fixed_large_log,clip_sample=false]", "reverse: step", "fail"),
    ("properties.support.broken_adapters:raises_at_t_equal_T", "forward: q_sample with given noise", "error"),
    ("diffusers", "likelihood: prior term L_T (nats)", "skip"),
    ("guided-diffusion", "convention: normal CDF", "convention"),
])
def test_each_outcome_appears_in_table_json_and_exit_status(spec, title, outcome, tmp_path, capsys):
    status, out, err, report = run_check(spec, tmp_path, capsys)
    row = next(r for r in report["results"] if r["name"] == title)
    assert row["status"] == outcome and row["detail"], row
    assert status == report["exit_status"] == (1 if outcome in ("fail", "error") else 0)
    table_row = next(line for line in out.splitlines() if title[:40] in line)
    assert f" {outcome} " in table_row, table_row
    if outcome == "skip":
        assert "does not provide the operation 'prior_term'" in row["detail"]


def test_an_error_names_the_operation_the_exception_and_the_timesteps_it_raises_at(tmp_path, capsys):
    _, _, _, report = run_check("properties.support.broken_adapters:raises_at_t_equal_T", tmp_path, capsys)
    row = next(r for r in report["results"] if r["status"] == "error")
    assert row["detail"].startswith("q_sample raised IndexError: index 1000 is out of bounds")
    assert row["detail"].endswith("(t = 1000; 1 of 7 timesteps)") and "\n" not in row["detail"]
    assert TRACEBACK in row["traceback"]
    _, _, _, report = run_check("properties.support.broken_adapters:raises_on_mixed_timesteps", tmp_path, capsys)
    row = next(r for r in report["results"] if r["status"] == "error")
    assert row["detail"].startswith("posterior_mean raised ValueError") and \
        "on a batch mixing t = 1, 2, 3, 100, 500, 999, 1000; each t alone runs" in row["detail"]


def test_the_targets_traceback_is_shown_only_on_request(tmp_path, capsys):
    spec = "properties.support.broken_adapters:raises_at_t_equal_T"
    _, out, err, _ = run_check(spec, tmp_path, capsys)
    assert TRACEBACK not in out + err
    _, out, _, _ = run_check(spec, tmp_path, capsys, "--traceback")
    assert TRACEBACK in out and "IndexError" in out


def test_every_failing_input_is_listed(tmp_path, capsys):
    """An undeclared floor fails at t = 1 only: the table says so, the JSON lists each value, and the
    detail says which declaration would describe the code."""
    status, out, _, report = run_check("properties.support.broken_adapters:floor_undeclared", tmp_path, capsys)
    assert status == 1
    row = next(r for r in report["results"] if r["name"] == "posterior: log-variance")
    assert row["failed_timesteps"] == [1] and row["where_failed"] == "t = 1 (1 of 7 timesteps; 32 of 224 values)"
    assert len(row["failures"]) == 32 and {f["t"] for f in row["failures"]} == {1}
    assert all(np.isclose(f["got"], np.log(1e-20)) and f["tolerance"] > 0 for f in row["failures"])
    assert "declare log_variance_at_1 = 'floor' and variance_floor = 1e-20" in row["detail"]
    assert "t = 1 (1 of 7 timesteps; 32 of 224 values)" in out


def test_a_bug_of_ours_exits_three_with_one_line_and_the_traceback_in_a_file(monkeypatch, capsys):
    def broken_check(target):
        return 1 / 0

    monkeypatch.setattr(conformance, "CHECKS", [conformance.Check("betas", broken_check, "schedule: beta_t")]
                        + conformance.CHECKS[1:])
    assert main(["check", "ddpm_verify.adapters.template:make_target"]) == 3
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and TRACEBACK not in out + err, err
    assert lines[0].startswith("ddpm-verify: internal error (a bug in ddpm-verify): check broken_check of "
                               "NumpyDDPM (template): ZeroDivisionError: division by zero; the traceback is in ")
    path = lines[0].rsplit("the traceback is in ", 1)[1]
    with open(path) as fh:
        assert "ZeroDivisionError" in fh.read()
    os.remove(path)


def test_an_exception_from_ddpm_verifys_own_adapter_code_is_ours_and_from_the_target_theirs():
    def raise_in(module: str):
        namespace = {"__name__": module}
        exec("def f():\n    return {}['missing']", namespace)
        try:
            namespace["f"]()
        except KeyError as exc:
            return exc

    assert raised_by_us(raise_in("ddpm_verify.adapters.diffusers_schedulers"))
    assert not raised_by_us(raise_in("diffusers.schedulers.scheduling_ddpm"))
    assert not raised_by_us(raise_in("ddpm_verify.adapters.template"))
    assert not raised_by_us(raise_in("my_target"))


def test_a_target_that_cannot_be_checked_shows_its_traceback_only_on_request(capsys):
    spec = "properties.support.broken_adapters:raising_reference_schedule"
    assert main(["check", spec]) == 2
    assert TRACEBACK not in capsys.readouterr().err
    assert main(["check", spec, "--traceback"]) == 2
    assert TRACEBACK in capsys.readouterr().err


def test_conventions_are_listed_and_the_rest_still_checked():
    """diffusers floors the variance at 1e-20: a convention line, and the step from t = 1 still adds
    no noise while every t >= 2 is compared as the math says."""
    results = {r.name: r for r in conformance.run(resolve("diffusers"))}
    convention = results["convention: t = 1 log-variance"]
    assert convention.status == "convention" and "log(1e-20)" in convention.detail
    assert results["reverse: the last step (t = 1) adds no noise"].status == "pass"
    assert results["reverse: variance of p_theta (t >= 2)"].timesteps == [2, 3, 100, 500, 999, 1000]


def test_the_checks_read_only_the_documented_attributes():
    """The declaration a check sees (`Checked`) holds exactly the attributes the protocol's page
    documents (plus what is derived: T, d, the schedule, the wrapped object and the dtypes of its
    outputs), so no check can read an attribute the page does not list (the README's table lists
    them too: test_repository.py)."""
    import re

    from ddpm_verify.adapters import protocol

    documented = set(re.findall(r"^``(\w+)(?:\(\))?``\s+[ROMS]\s", protocol.__doc__, flags=re.M))
    seen = set(vars(conformance.checked(resolve("ddpm_verify.adapters.template:make_target"))))
    assert seen - {"target", "T", "d", "schedule", "output_roundoff"} == documented - {"reference_schedule"}
