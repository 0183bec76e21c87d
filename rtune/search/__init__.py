"""Search spaces and search algorithms, with Ray Tune's public names (like `ray.tune.search`)."""

from rtune._strict import strict_api
from rtune.search.concurrency_limiter import ConcurrencyLimiter
from rtune.search.repeater import Repeater
from rtune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
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
from rtune.search.searcher import Searcher, SearcherNeeds
from rtune.search.variant_generator import BasicVariantGenerator

__all__ = [
    "BasicVariantGenerator",
    "Categorical",
    "ConcurrencyLimiter",
    "Domain",
    "Float",
    "Function",
    "Integer",
    "Repeater",
    "Searcher",
    "SearcherNeeds",
    "choice",
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
    "sample_from",
    "uniform",
]

# a misspelled keyword is a TypeError naming the valid ones (rtune/_strict.py)
strict_api(globals(), __all__)
