"""Snapshots and regression testing (ddpm_verify.snapshot, `ddpm-verify snapshot` / `regress`).

A target regressed against its own snapshot is unchanged; the file round-trips every float
exactly, NaN and infinities included; a target whose loss code changed (nats for bits in the VB
terms, 1 - abar for sqrt(1 - abar) in add_noise) or a snapshot value moved by 1e-3 is reported
under the right key with exit 1, while one float32 ulp is not; unusable files and targets exit 2
with one line on stderr.
"""

import json
import math
import os
import sys
import textwrap
import warnings

import numpy as np
import pytest

from ddpm_verify.cli import main
from ddpm_verify.snapshot import (
    FORMAT,
    encode,
    compare,
    decode,
    outputs,
    read,
    record,
    write,
)
from ddpm_verify.targets import resolve

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, its module fixtures once
pytestmark = pytest.mark.xdist_group("snapshot")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="module")
def guided():
    """The stock guided-diffusion target and its snapshot, recorded once."""
    target = resolve("guided-diffusion")
    return target, record(target)


def _save(snapshot, path):
    write(snapshot, path)
    return str(path)


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ddpm-verify: error:"), err
    return err[0]


@pytest.mark.parametrize("spec, count", [("diffusers", 24), ("guided-diffusion", 28)])
def test_a_target_regressed_against_its_own_snapshot_is_unchanged(spec, count, tmp_path, capsys):
    path = str(tmp_path / "snap.json")
    assert main(["snapshot", spec, "-o", path]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and f"recorded {count} outputs" in out[0] and path in out[0], out
    assert main(["regress", spec, path]) == 0
    assert f"no change beyond tolerance in {count} outputs" in capsys.readouterr().out


def test_snapshot_keys_cover_the_operations(guided):
    target, snapshot = guided
    keys = set(snapshot["outputs"])
    assert {"betas", "alpha_bar", "q_sample", "q_sample_random", "q_mean", "posterior_log_variance", "x0_from_eps",
            "eps_from_x0", "predict_x0", "p_mean", "reverse_step", "vlb_term", "prior_term", "total_bpd.total",
            "training_loss"} <= keys
    assert snapshot["format"] == FORMAT and snapshot["unit_roundoff"] == target.unit_roundoff
    assert {"velocity", "p_variance", "previous_t"} <= set(record(resolve("diffusers"))["outputs"])


def test_the_file_round_trips_every_float_exactly(guided, tmp_path):
    target, snapshot = guided
    loaded = decode(read(_save(snapshot, tmp_path / "snap.json")))
    now = outputs(target)
    assert loaded.keys() == now.keys()
    for key, old in loaded.items():
        assert [v.hex() for v in old.ravel().tolist()] == [v.hex() for v in now[key][0].ravel().tolist()], key


def test_non_finite_values_are_encoded_as_strings_and_round_trip():
    values = np.array([[math.nan, math.inf], [-math.inf, -0.0], [5e-324, 0.1]])
    text = json.dumps(encode(values), allow_nan=False)
    assert json.loads(text)[:3] == ["nan", "inf", "-inf"]
    entry = {"shape": [3, 2], "values": json.loads(text), "inputs": ""}
    back = decode({"format": FORMAT, "unit_roundoff": 2.0 ** -24, "outputs": {"x": entry}})["x"]
    assert np.array_equal(back, values, equal_nan=True) and np.signbit(back[1, 1])
    assert [v.hex() for v in back.ravel()[3:]] == [v.hex() for v in values.ravel()[3:]]


def test_a_recorded_nan_that_stays_nan_is_no_change(tmp_path):
    spec = "diffusers[variance_type=fixed_large_log,clip_sample=false]"     # step gives NaN (a real bug)
    snapshot = record(resolve(spec))
    assert "nan" in snapshot["outputs"]["reverse_step"]["values"]
    assert main(["regress", spec, _save(snapshot, tmp_path / "snap.json")]) == 0


@pytest.fixture
def modified(tmp_path, monkeypatch):
    """Targets whose loss code changed: VB terms in nats where bits are promised, and add_noise
    with 1 - abar_t where sqrt(1 - abar_t) belongs."""
    (tmp_path / "modified_targets.py").write_text(textwrap.dedent("""
        import math
        import guided_diffusion.gaussian_diffusion as gd
        from diffusers import DDPMScheduler

        class NatsDiffusion(gd.GaussianDiffusion):
            def _vb_terms_bpd(self, *args, **kwargs):
                out = super()._vb_terms_bpd(*args, **kwargs)
                return {**out, "output": out["output"] * math.log(2.0)}

        def nats():
            return NatsDiffusion(betas=gd.get_named_beta_schedule("linear", 1000),
                                 model_mean_type=gd.ModelMeanType.EPSILON, model_var_type=gd.ModelVarType.FIXED_LARGE,
                                 loss_type=gd.LossType.MSE)

        class VarianceNoise(DDPMScheduler):
            def add_noise(self, original_samples, noise, timesteps):
                abar = self.alphas_cumprod[timesteps].to(original_samples.dtype)
                abar = abar.reshape(-1, *[1] * (original_samples.ndim - 1))
                return abar.sqrt() * original_samples + (1 - abar) * noise

        def variance_noise():
            return VarianceNoise()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("modified_targets", None)


@pytest.mark.parametrize("stock, spec, changed", [
    ("guided-diffusion", "modified_targets:nats", {"vlb_term", "total_bpd.total", "total_bpd.terms"}),
    ("diffusers", "modified_targets:variance_noise", {"q_sample"}),
])
def test_a_modified_target_is_reported_under_the_right_keys(modified, stock, spec, changed, tmp_path, capsys):
    path = str(tmp_path / "snap.json")
    assert main(["snapshot", stock, "-o", path]) == 0
    capsys.readouterr()
    assert main(["regress", spec, path]) == 1
    captured = capsys.readouterr()
    assert all(key in captured.out for key in changed) and "CHANGED:" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ddpm-verify: warning:") and "taken of" in err[0], err
    reported = {c.key for c in compare(resolve(spec), read(path)) if c.failed}
    assert reported == changed


def _largest(snapshot, key):
    values = snapshot["outputs"][key]["values"]
    return max(range(len(values)), key=lambda i: abs(values[i]))


def test_a_value_moved_by_1e_3_is_a_change_named_by_its_key(guided, tmp_path, capsys):
    _, snapshot = guided
    tampered = json.loads(json.dumps(snapshot))
    i = _largest(tampered, "training_loss")
    tampered["outputs"]["training_loss"]["values"][i] *= 1 + 1e-3
    path = _save(tampered, tmp_path / "snap.json")
    assert main(["regress", "guided-diffusion", path]) == 1
    out = capsys.readouterr().out
    assert "training_loss" in out and "1 of 42" in out and "CHANGED: 1 of 28 outputs" in out


def test_one_float32_ulp_everywhere_is_no_change(guided, tmp_path):
    _, snapshot = guided
    nudged = json.loads(json.dumps(snapshot))
    for entry in nudged["outputs"].values():
        entry["values"] = [v + float(np.spacing(np.float32(v))) if isinstance(v, float) and v else v
                           for v in entry["values"]]
    assert main(["regress", "guided-diffusion", _save(nudged, tmp_path / "snap.json")]) == 0


def test_shape_missing_non_finite_and_new_outputs():
    target = resolve("diffusers")
    snapshot = record(target)
    out = snapshot["outputs"]
    out["q_sample"]["values"][0] = "nan"
    out["previous_t"] = {"shape": [2], "values": [1.0, 2.0], "inputs": ""}           # other shape
    out["gone"] = {"shape": [1], "values": [1.0], "inputs": ""}
    del out["velocity"]
    kinds = {c.key: c.kind for c in compare(target, snapshot)}
    assert kinds == {"q_sample": "non-finite", "previous_t": "shape", "gone": "missing", "velocity": "new"}


def test_new_outputs_alone_are_no_failure(tmp_path, capsys):
    snapshot = record(resolve("diffusers"))
    del snapshot["outputs"]["velocity"]
    assert main(["regress", "diffusers", _save(snapshot, tmp_path / "snap.json")]) == 0
    assert "no change beyond tolerance in 23 outputs; 1 new output" in capsys.readouterr().out


def _write_text(tmp_path, text):
    path = tmp_path / "snap.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("content, says", [
    (None, "no such file"),
    ("{not json", "is not JSON"),
    (json.dumps({"format": "something-else/1", "outputs": {}}), "not a ddpm-verify snapshot"),
    (json.dumps([1, 2]), "not a ddpm-verify snapshot"),
    (json.dumps({"format": FORMAT, "unit_roundoff": 2.0 ** -24,
                 "outputs": {"q_sample": {"shape": [2], "values": [1.0, "oops"]}}}), "'oops'"),
    (json.dumps({"format": FORMAT, "unit_roundoff": 2.0 ** -24,
                 "outputs": {"q_sample": {"shape": [3], "values": [1.0]}}}), "does not hold"),
])
def test_an_unusable_snapshot_file_exits_two_with_one_line(content, says, tmp_path, capsys):
    path = str(tmp_path / "missing.json") if content is None else _write_text(tmp_path, content)
    assert main(["regress", "diffusers", path]) == 2
    assert says in _one_error_line(capsys)


@pytest.mark.parametrize("spec", ["reference", "no_such_target", "diffusers[beta_schedule=bogus]"])
def test_an_unusable_target_exits_two_with_one_line(spec, tmp_path, capsys):
    path = _save(record(resolve("diffusers")), tmp_path / "snap.json")
    assert main(["regress", spec, path]) == 2
    _one_error_line(capsys)
    assert main(["snapshot", spec, "-o", str(tmp_path / "other.json")]) == 2
    _one_error_line(capsys)
    assert not (tmp_path / "other.json").exists()


def test_an_unwritable_snapshot_path_exits_two(tmp_path, capsys):
    assert main(["snapshot", "diffusers", "-o", str(tmp_path / "no_dir" / "snap.json")]) == 2
    assert "cannot write" in _one_error_line(capsys)
