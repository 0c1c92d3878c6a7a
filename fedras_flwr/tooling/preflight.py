"""What a run needs before round 1, checked in seconds with one clear line on failure: the config is
valid, the dataset is there and parses, the model's packages are installed and a checkpoint to resume
from matches. The `fedras` command and `fedras deploy-local` run it before starting Flower, and the
ServerApp again before its first round."""

from __future__ import annotations

from fedras_flwr.algorithm.components import make_model
from fedras_flwr.algorithm.data import DatasetError, load_split
from fedras_flwr.algorithm.models import MissingDependencyError
from fedras_flwr.config import ConfigError, RunConfig
from fedras_flwr.tooling.checkpoint import CheckpointError
from fedras_flwr.tooling.session import ResumePoint, find_resume_point

#: what `preflight` raises: each says what is wrong and what to do, in one line
RunRefused = (ConfigError, DatasetError, MissingDependencyError, CheckpointError)


def preflight(cfg: RunConfig) -> ResumePoint | None:
    """The checkpoint the run continues from (None: a new run), once the model, the data (loaded and cached in
    this process for the run) and that checkpoint are known to be usable."""
    make_model(cfg)
    load_split(cfg)
    return find_resume_point(cfg)
