"""Ray Tune's `ray.tune.analysis`: `ExperimentAnalysis`, what `tune.run` returns."""

from rtune.analysis.experiment_analysis import ExperimentAnalysis

__all__ = ["ExperimentAnalysis"]
