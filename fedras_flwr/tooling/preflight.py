"""What a run needs before round 1, checked in seconds with one clear line on failure: the config is
valid, the dataset is there and parses, the model's packages are installed and a checkpoint to resume
from matches. The `fedras` command
runs it before starting Flower, and the ServerApp again before its first round."""

from __future__ import annotations

from dataclasses import dataclass

from fedras_flwr.algorithm.components import make_model
from fedras_flwr.algorithm.data import DatasetError, load_split
from fedras_flwr.algorithm.data.split import SplitDataset
from fedras_flwr.algorithm.models import MissingDependencyError
from fedras_flwr.config import ConfigError, RunConfig
from fedras_flwr.tooling.checkpoint import CheckpointError
from fedras_flwr.tooling.session import ResumePoint, find_resume_point

#: what `preflight` raises: each says what is wrong and what to do, in one line
RunRefused = (ConfigError, DatasetError, MissingDependencyError, CheckpointError)


@dataclass(frozen=True)
class Ready:
    split: SplitDataset  # the run's data (cached in this process for the run)
    resume: ResumePoint | None  # the checkpoint the run continues from


def preflight(cfg: RunConfig) -> Ready:
    """The run's data and checkpoint, once the model, the data and the checkpoint (if any) are usable."""
    make_model(cfg)
    return Ready(load_split(cfg), find_resume_point(cfg))
