"""The ddpm-verify command line: usage errors and unknown targets exit 2 with one clear line."""

import pytest

from ddpm_verify.cli import main


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "check" in capsys.readouterr().out


def test_unknown_target_exits_two_with_one_line(capsys):
    assert main(["check", "no_such_target"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_target" in err[0] and "reference" in err[0]


@pytest.mark.parametrize("argv", [[], ["check"], ["frobnicate"]])
def test_wrong_usage_exits_two(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
