"""Saving and loading checkpoints: a dict of tensors and plain values, readable with
`torch.load(path, weights_only=True)`.

    {"format": FORMAT, "format_version": FORMAT_VERSION,
     "config": TrainConfig.to_dict(), "state_dict": EMA weights (CPU float32),
     "provenance": {device, device_name, steps, seed, wall_time_s, versions, ...},
     "loss_log": {"step": [...], "loss": [...], "elapsed_s": [...]}}

Every way a file can be unusable (missing, not a torch file, another format, weights that do not
fit the config) is a `CheckpointError` naming the path and the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig
from .losses import Tables
from .network import EpsMLP

FORMAT = "ddpm-verify/eps-mlp"
FORMAT_VERSION = 1
#: the checkpoint that ships with the package (trained by `ddpm-verify train`, see its provenance)
DEFAULT_CHECKPOINT = Path(__file__).with_name("ring8.pt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TrainedModel:
    """A loaded checkpoint: the network (eval mode, float32), its config and tables, the raw dict."""

    net: EpsMLP
    config: TrainConfig
    tables: Tables
    provenance: dict
    loss_log: dict
    path: Path


def save(checkpoint: dict, path) -> Path:
    """Write `checkpoint` to path atomically (a temporary file renamed into place)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory; give a file name such as {path / 'model.pt'}")
    if not path.parent.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: directory {path.parent} does not exist")
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def load(path=None, device="cpu") -> TrainedModel:
    """Load and validate a checkpoint (default: the packaged one) onto `device`."""
    path = Path(DEFAULT_CHECKPOINT if path is None else path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch raises many types for a damaged or foreign file)
        lines = [s.strip() for s in str(err).splitlines() if s.strip()]
        why = next((s for s in lines if s.startswith("WeightsUnpickler error")), lines[0] if lines else "")
        raise CheckpointError(f"checkpoint {path} cannot be read with torch.load(weights_only=True) "
                              f"({type(err).__name__}: {why[:300]})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"checkpoint {path} is not a ddpm-verify model checkpoint "
                              f"(format {found!r}, expected {FORMAT!r})")
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format_version {raw.get('format_version')!r}; "
                              f"this ddpm-verify reads version {FORMAT_VERSION}")
    missing = [k for k in ("config", "state_dict", "provenance", "loss_log") if k not in raw]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    try:
        config = TrainConfig.from_dict(raw["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {err}") from None
    net = EpsMLP(2, config.hidden, config.depth, config.emb_dim)
    try:
        net.load_state_dict(raw["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).splitlines()
        raise CheckpointError(f"checkpoint {path}: the weights do not fit its config (hidden={config.hidden}, "
                              f"depth={config.depth}, emb_dim={config.emb_dim}): "
                              f"{' '.join(s.strip() for s in first[:3])[:300]}") from None
    if not all(torch.isfinite(v).all() for v in net.state_dict().values()):
        raise CheckpointError(f"checkpoint {path} holds non-finite weights")
    net = net.to(device).eval().requires_grad_(False)
    return TrainedModel(net, config, Tables.from_schedule(config.reference_schedule(), device),
                        raw["provenance"], raw["loss_log"], path)
