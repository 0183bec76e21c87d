"""Trial schedulers, at Ray Tune's import path (`ray.tune.schedulers`)."""

from rtune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

__all__ = ["FIFOScheduler", "TrialScheduler"]
