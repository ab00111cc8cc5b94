"""`ddpm-verify train` and `ddpm-verify verify-model`: argument parsing and the two commands.

Exit status: 0 done (train) or every check passed (verify-model); 1 a check failed; 2 unusable
arguments or checkpoint (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from .config import TrainConfig

#: TrainConfig fields that `train` exposes as options (the rest keep their defaults)
TRAIN_OPTIONS = ("steps", "batch", "lr", "warmup", "ema_decay", "seed", "hidden", "depth", "emb_dim", "T",
                 "schedule", "modes", "radius", "std")


def add_parsers(sub) -> None:
    defaults = TrainConfig()
    train = sub.add_parser("train", help="train the small DDPM on the 2-D Gaussian-mixture ring; save a checkpoint",
                           description="Train the noise-prediction MLP on L_simple (CUDA when available, else "
                                       "CPU) and save a checkpoint with weights, config and provenance. "
                                       "Exit 0: saved; 2: bad options or output path.")
    train.add_argument("-o", "--output", metavar="PATH", default="ddpm.pt", help="checkpoint file (default ddpm.pt)")
    kinds = {f.name: f.type for f in fields(TrainConfig)}
    for name in TRAIN_OPTIONS:
        kind = {"int": int, "float": float, "str": str}[kinds[name]]
        train.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=getattr(defaults, name),
                           metavar=name.upper(), help=f"default {getattr(defaults, name)}")
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    train.add_argument("--compile", action="store_true", help="torch.compile the network for the training loop")
    train.add_argument("--log-every", type=int, default=1000, metavar="N", help="steps between loss log lines")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    verify = sub.add_parser("verify-model", help="verify a trained checkpoint against the reference and the exact "
                                                 "optimum",
                            description="Check a trained checkpoint (default: the one shipped with ddpm-verify): its "
                                        "loss code against the reference, its eps against the exact eps*, the "
                                        "negative ELBO against the data entropy, its samples against the data. "
                                        "Exit 0: every check passes; 1: a check fails; 2: unusable checkpoint.")
    verify.add_argument("checkpoint", metavar="CKPT", nargs="?", help="checkpoint file (default: the shipped one)")
    verify.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH")
    verify.add_argument("--plots", metavar="DIR", help="write PNG figures into DIR")
    verify.add_argument("--seed", type=int, default=None, help="seed of every Monte Carlo draw (default fixed)")


def _error(msg: str) -> int:
    print(f"ddpm-verify: error: {msg}", file=sys.stderr)
    return 2


def train_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .checkpoint import CheckpointError, save
    from .train import pick_device, train
    try:
        cfg = TrainConfig(**{name: getattr(args, name) for name in TRAIN_OPTIONS})
        if args.log_every < 1:
            raise ValueError(f"--log-every must be >= 1; got {args.log_every}")
        device = pick_device(args.device)
        out = Path(args.output)
        if out.is_dir() or not out.parent.is_dir():
            raise CheckpointError(f"--output {out}: " + ("is a directory" if out.is_dir()
                                                        else f"directory {out.parent} does not exist"))
    except ValueError as exc:
        return _error(str(exc))
    print(f"training on {device} ({'CUDA' if device.type == 'cuda' else 'no GPU used'}); config {cfg.to_dict()}",
          flush=True)
    checkpoint = train(cfg, device=str(device), compile=args.compile, log_every=args.log_every,
                       progress=not args.no_progress)
    save(checkpoint, out)
    p = checkpoint["provenance"]
    print(f"saved {out}: {p['steps']} steps in {p['wall_time_s']:.1f}s ({p['steps_per_s']:.1f} steps/s) on "
          f"{p['device']} ({p['device_name']})")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError, load
    from .. import SEED
    from .verify import verify
    try:
        model = load(args.checkpoint)
    except CheckpointError as exc:
        return _error(str(exc))
    p = model.provenance
    print(f"checkpoint {model.path}: {p.get('steps')} steps, seed {p.get('seed')}, trained on {p.get('device')} "
          f"({p.get('device_name')}) in {p.get('wall_time_s')}s", flush=True)
    report = verify(model, seed=SEED if args.seed is None else args.seed)
    _print_report(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report.as_json(), fh, indent=2)
    if args.plots:
        from .plots import write_plots
        for path in write_plots(report, model, args.plots):
            print(f"wrote {path}")
    return 0 if report.passed else 1


def _print_report(report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    v = report.values
    table = Table(title="ddpm-verify verify-model")
    for col in ("check", "status", "detail"):
        table.add_column(col)
    colour = {"pass": "green", "note": "cyan", "fail": "red"}
    for c in report.checks:
        table.add_row(escape(c.name), f"[{colour.get(c.status, 'yellow')}]{c.status}[/]", escape(c.detail))
    console = Console(width=200)
    console.print(table)
    console.print(f"-ELBO {v['neg_elbo_nats']:.4f} +- {v['neg_elbo_se']:.4f} nats per example "
                  f"({v['neg_elbo_bpd']:.4f} bits/dim), H(data) {v['data_entropy_nats']:.4f}; gap "
                  f"{v['gap_nats']:.4f} +- {v['gap_se']:.4f}; eps relative MSE (t >= T/20) "
                  f"{v['eps_relative_mse']:.3g}", highlight=False)
    failed = sum(not (c.status in ("pass", "note")) for c in report.checks)
    console.print(f"{'PASS' if not failed else 'FAIL'}: {len(report.checks) - failed} of {len(report.checks)} checks "
                  f"passed", highlight=False)
