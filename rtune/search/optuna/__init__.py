"""`OptunaSearch` on real Optuna (`pip install 'rtune[optuna]'`), at Ray Tune's import path."""

from rtune.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
