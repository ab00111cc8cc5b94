"""The ``ddpm-verify`` command line.

Exit status: 0 when every applicable check passes; 1 when a check failed or the target raised
on valid input (the table says which); 2 when the target cannot be checked at all or the usage
is wrong (one line on stderr); 3 for a bug in ddpm-verify itself (one line on stderr naming the
file the traceback was written to). No traceback reaches the terminal without ``--traceback``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
import warnings

from . import SEED, __version__
from .errors import InternalError, TargetError, one_line
from .targets import TARGET_HELP


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddpm-verify",
        description="Verify diffusion-model (DDPM) mathematics against a float64 reference.")
    parser.add_argument("--version", action="version", version=f"ddpm-verify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="check TARGET against the float64 reference; print a table of outcomes",
                           description="Check TARGET against the float64 reference (for 'reference': run the "
                                       "property suite) and print one row per check: pass, note, fail, error "
                                       "(the target raised), skip, and the target's conventions. Exit 0: every "
                                       "applicable check passes; 1: a check failed or errored; 2: TARGET cannot be "
                                       "checked; 3: a bug in ddpm-verify.")
    check.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    check.add_argument("--json", metavar="PATH", help="also write the results, every failing input included, "
                                                      "as JSON to PATH")
    check.add_argument("--traceback", action="store_true",
                       help="show tracebacks: of the target's exceptions, and of a target that cannot be checked")
    for kind, signature in (("sampler", "sample(model, n)"), ("loss", "loss(model, x0)")):
        loop = sub.add_parser(f"check-{kind}", help=f"run a whole {kind} ({signature}) with an exact oracle network",
                              description=f"Run the {kind} TARGET names (package.module:attr, a factory of an "
                                          f"object with {signature} and its declaration: see the README) "
                                          "untouched, with a network that is the exact optimum for Gaussian data, "
                                          "and test what it asks and returns against the exact law. Exit 0: every "
                                          "check passes; 1: a check failed or the code raised; 2: TARGET cannot be "
                                          "checked; 3: a bug in ddpm-verify.")
        loop.add_argument("target", metavar="TARGET", help=f"package.module:attr, a factory of the {kind}")
        loop.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
        loop.add_argument("--seed", type=int, default=None, help="seed of the checker's draws and of the code's "
                                                                 "torch and NumPy generators (default: fixed)")
        loop.add_argument("--traceback", action="store_true", help="show the code's tracebacks")
    template = sub.add_parser("template", help="print a template adapter (a plain NumPy DDPM and its adapter) "
                                               "to stdout; --loop: a whole loop and loss with their wrapper",
                              description="Print a runnable template adapter: a plain NumPy float64 DDPM and the "
                                          "adapter that exposes it to the checks. Save it, replace the DDPM with "
                                          "calls into your code, and run 'ddpm-verify check my_target:make_target'. "
                                          "With --loop: a plain torch DDPM sampling loop and training loss and the "
                                          "wrapper classes of check-sampler and check-loss ('ddpm-verify "
                                          "check-sampler my_loop:Sampler').")
    template.add_argument("--loop", action="store_true", help="the whole-loop template (check-sampler, check-loss)")
    snapshot = sub.add_parser("snapshot", help="record TARGET's outputs on a fixed seeded battery to a JSON file",
                              description="Evaluate every deterministic operation TARGET provides on a fixed, "
                                          "seeded battery of inputs and write the outputs to FILE, for "
                                          "'ddpm-verify regress'. Exit 0: written; 2: TARGET or FILE unusable.")
    snapshot.add_argument("target", metavar="TARGET", help=TARGET_HELP.removeprefix("reference, "))
    snapshot.add_argument("-o", "--output", metavar="FILE", required=True, help="the snapshot file to write")
    regress = sub.add_parser("regress", help="compare TARGET's outputs with a snapshot; list what changed",
                             description="Recompute the outputs recorded in FILE with TARGET and list those "
                                         "that changed beyond float reordering noise. Exit 0: no change (new "
                                         "outputs aside); 1: a change; 2: TARGET or FILE unusable.")
    regress.add_argument("target", metavar="TARGET", help=TARGET_HELP.removeprefix("reference, "))
    regress.add_argument("snapshot", metavar="FILE", help="a file written by 'ddpm-verify snapshot'")
    from .model.commands import add_parsers
    add_parsers(sub)
    return parser


def _template(loop: bool) -> int:
    from importlib.resources import files

    sys.stdout.write(files("ddpm_verify.endtoend" if loop else "ddpm_verify.adapters").joinpath("template.py")
                     .read_text())
    return 0


def _report(run, args) -> int:
    from .report import print_run, write_json
    from .results import exit_status

    print_run(run, tracebacks=args.traceback)
    if args.json:
        write_json(args.json, run)
    return exit_status(run.results)


def _check(args) -> int:
    from .engine import check

    return _report(check(args.target), args)


def _check_loop(args) -> int:
    from .engine import check_loop

    return _report(check_loop(args.target, args.command.removeprefix("check-"),
                              SEED if args.seed is None else args.seed), args)


def _dispatch(args) -> int:
    if args.command in ("check-sampler", "check-loss"):
        return _check_loop(args)
    if args.command in ("snapshot", "regress"):
        from .snapshot import command
        return command(args)
    if args.command in ("train", "verify-model"):
        from .model.commands import train_command, verify_command
        return train_command(args) if args.command == "train" else verify_command(args)
    if args.command == "template":
        return _template(args.loop)
    return _check(args)


def _write_traceback() -> str:
    with tempfile.NamedTemporaryFile("w", prefix="ddpm-verify-traceback-", suffix=".txt", delete=False) as fh:
        fh.write(traceback.format_exc())
    return fh.name


def main(argv: list[str] | None = None) -> int:
    # guided-diffusion's nn.py decorates with torch.cuda.amp.custom_fwd, deprecated: a notice about
    # the library's own import, not about the math, printed on every check of it
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"guided_diffusion\.")
    args = _parser().parse_args(argv)
    show = getattr(args, "traceback", False)
    try:
        return _dispatch(args)
    except TargetError as exc:
        if show:
            traceback.print_exc()
        print(f"ddpm-verify: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - anything else is a bug of ours: exit 3, one line
        path = _write_traceback()
        if show:
            traceback.print_exc()
        what = " ".join(str(exc).split()) if isinstance(exc, InternalError) else one_line(exc)
        print(f"ddpm-verify: internal error (a bug in ddpm-verify): {what}; the traceback is in {path}",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
