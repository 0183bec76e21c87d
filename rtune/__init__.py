"""rtune: Ray-Tune-compatible hyperparameter tuning that you can stop at any moment and resume
anywhere. `import rtune as tune` runs scripts written for `ray.tune`."""

from rtune import logger
from rtune._config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from rtune._durable.storage import StorageError
from rtune._execution.resources import PlacementGroupFactory, with_resources
from rtune._execution.session import get_checkpoint, get_context, report
from rtune._strict import strict_api
from rtune.analysis import ExperimentAnalysis
from rtune.callback import Callback
from rtune.checkpoint import Checkpoint
from rtune.control import stop_experiment
from rtune.error import TuneError
from rtune.result_grid import Result, ResultGrid, TrialError
from rtune.schedulers import FIFOScheduler, TrialScheduler
from rtune.search import (
    BasicVariantGenerator,
    Searcher,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from rtune.stopper import (
    CombinedStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
)
from rtune.trainable import Trainable, with_parameters
from rtune.tune_run import run
from rtune.tuner import Tuner

__version__ = "0.1.0"

__all__ = [
    "BasicVariantGenerator",
    "Callback",
    "ExperimentAnalysis",
    "logger",
    "Checkpoint",
    "CheckpointConfig",
    "CombinedStopper",
    "ExperimentPlateauStopper",
    "FIFOScheduler",
    "FailureConfig",
    "FunctionStopper",
    "MaximumIterationStopper",
    "PlacementGroupFactory",
    "Result",
    "ResultGrid",
    "RunConfig",
    "Searcher",
    "Stopper",
    "StorageError",
    "TimeoutStopper",
    "Trainable",
    "TrialError",
    "TrialPlateauStopper",
    "TrialScheduler",
    "TuneConfig",
    "TuneError",
    "Tuner",
    "choice",
    "get_checkpoint",
    "get_context",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "report",
    "run",
    "sample_from",
    "stop_experiment",
    "uniform",
    "with_parameters",
    "with_resources",
]

# a misspelled keyword anywhere in the public API is a TypeError naming the valid ones
strict_api(globals(), __all__)
