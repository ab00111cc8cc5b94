"""A small DDPM in torch for 2-D Gaussian-mixture data: the noise-prediction MLP, its loss code,
the ancestral sampler, the trainer, checkpoints, and the verification of a trained model
against `reference` and the exact optimum eps* (docs/math.md §6, §7)."""

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, TrainedModel, load, save
from .config import TrainConfig
from .network import EpsMLP, time_embedding

__all__ = [
           "DEFAULT_CHECKPOINT",
           "CheckpointError",
           "EpsMLP",
           "TrainConfig",
           "TrainedModel",
           "load",
           "save",
           "time_embedding",
]
