"""`ddpm-verify check-sampler` and `check-loss`: the exit statuses and what they print.

0 when every check passes, 1 when one fails or the code raised (a row says which), 2 with one
line on stderr when the target cannot be checked (import, a missing or invalid declaration); the
JSON holds the declaration and every row. No traceback on the terminal.
"""

import json

import pytest

from ddpm_verify.cli import main
from properties.support import loops

HERE = "properties.support.loops"


def test_a_correct_sampler_exits_zero(capsys):
    assert main(["check-sampler", f"{HERE}:ancestral_vectors"]) == 0
    out = capsys.readouterr().out
    assert "PASS:" in out and "convention: samples" in out


def test_a_broken_loss_exits_one_and_the_json_says_where(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert main(["check-loss", f"{HERE}:NeverDrawsT1", "--json", str(path)]) == 1
    report = json.loads(path.read_text())
    assert report["exit_status"] == 1 and report["declaration"]["objective"] == "epsilon_mse"
    failed = [r for r in report["results"] if r["status"] == "fail"]
    assert failed and "t = 1 never drawn" in failed[0]["detail"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_loop_that_raises_is_an_error_row_and_exits_one(capsys):
    assert main(["check-sampler", f"{HERE}:RaisesInLoop"]) == 1
    out = capsys.readouterr().out
    assert "error" in out and "IndexError" in out and "Traceback" not in out


@pytest.mark.parametrize("factory, message", list(loops.REFUSED.items()), ids=[f.__name__ for f in loops.REFUSED])
def test_a_target_that_cannot_be_checked_exits_two_with_one_line(factory, message, capsys):
    assert main(["check-sampler", f"{HERE}:{factory.__name__}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_network_refuses_a_timestep_outside_the_declared_convention():
    """A loop passing paper t where it declares indices calls the network with t = T: the network
    raises a ValueError naming the value, the convention and T, which the check reports as an error."""
    from ddpm_verify.endtoend import declaration, sampler
    results, _ = sampler.check_sampler(declaration.declare(loops.PaperTimestepsDeclaredIndex(), "sampler"))
    assert results[0].status == "error"
    assert "t = 100, outside 0..99 (timesteps='index', T = 100)" in results[0].detail


def test_the_loop_template_prints_a_loop_and_loss_that_pass(tmp_path, capsys, monkeypatch):
    """`ddpm-verify template --loop` writes a runnable wrapper whose sampler and loss pass every check."""
    assert main(["template", "--loop"]) == 0
    (tmp_path / "my_loop_template.py").write_text(capsys.readouterr().out)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check-sampler", "my_loop_template:Sampler"]) == 0
    assert main(["check-loss", "my_loop_template:Loss"]) == 0
