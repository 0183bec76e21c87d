"""Loggers, as Ray Tune's `ray.tune.logger`: callbacks that write each trial's results where
people look (`progress.csv`, `result.json`, TensorBoard). The three are on by default; turn them
off with `RunConfig(default_loggers=False)`."""

from rtune.logger.csv import CSVLoggerCallback
from rtune.logger.json import JsonLoggerCallback
from rtune.logger.logger import LoggerCallback
from rtune.logger.tensorboardx import TBXLoggerCallback, available


def with_default_loggers(callbacks: list) -> list:
    """The callbacks given, then each default logger none of them is (as Ray Tune adds them);
    TensorBoard's where tensorboardX is installed (`rtune[tensorboard]`)."""
    defaults = [CSVLoggerCallback, JsonLoggerCallback]
    if available():
        defaults.append(TBXLoggerCallback)
    return list(callbacks) + [
        cls() for cls in defaults if not any(isinstance(cb, cls) for cb in callbacks)
    ]


__all__ = ["CSVLoggerCallback", "JsonLoggerCallback", "LoggerCallback", "TBXLoggerCallback"]
