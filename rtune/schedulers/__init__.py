"""Trial schedulers, at Ray Tune's import path (`ray.tune.schedulers`)."""

from rtune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from rtune.schedulers.hyperband import HyperBandScheduler
from rtune.schedulers.median_stopping_rule import MedianStoppingRule
from rtune.schedulers.pbt import PopulationBasedTraining, PopulationBasedTrainingReplay
from rtune.schedulers.trial_scheduler import (
    Decision,
    Exploit,
    FIFOScheduler,
    SchedulerNeeds,
    TrialScheduler,
)

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "Decision",
    "Exploit",
    "FIFOScheduler",
    "HyperBandScheduler",
    "MedianStoppingRule",
    "PopulationBasedTraining",
    "PopulationBasedTrainingReplay",
    "SchedulerNeeds",
    "TrialScheduler",
]
