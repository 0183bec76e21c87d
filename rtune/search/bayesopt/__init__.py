"""`BayesOptSearch` on bayesian-optimization 3.x (`pip install 'rtune[bayesopt]'`), at Ray Tune's
import path."""

from rtune.search.bayesopt.bayesopt_search import BayesOptSearch

__all__ = ["BayesOptSearch"]
