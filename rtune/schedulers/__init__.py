"""Trial schedulers, at Ray Tune's import path (`ray.tune.schedulers`)."""

from rtune.schedulers.median_stopping_rule import MedianStoppingRule
from rtune.schedulers.trial_scheduler import (
    Decision,
    Exploit,
    FIFOScheduler,
    SchedulerNeeds,
    TrialScheduler,
)

__all__ = [
    "Decision",
    "Exploit",
    "FIFOScheduler",
    "MedianStoppingRule",
    "SchedulerNeeds",
    "TrialScheduler",
]
