"""`HyperOptSearch` on real HyperOpt (`pip install 'rtune[hyperopt]'`), at Ray Tune's path."""

from rtune.search.hyperopt.hyperopt_search import HyperOptSearch

__all__ = ["HyperOptSearch"]
