"""Property-based: whatever malformed value a user passes (search space, stop criteria, TuneConfig,
CheckpointConfig, FailureConfig, resources), rtune refuses it with a ValueError or TypeError that
names the offending field or key: never an internal KeyError / AttributeError / AssertionError /
OverflowError, and, for checks that can only run in fit(), before anything reaches storage.

Most properties need no Ray: validation happens when the Tuner (or the search-space value) is built.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import string
import threading
import uuid
from fractions import Fraction
from numbers import Real

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import rtune as tune
from rtune.search import Categorical, Float, Integer

FAST = settings(max_examples=25, deadline=None)
# the fit() properties share the function-scoped `storage` fixture on purpose: nothing may be
# written under it, by any example
WITH_STORAGE = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def simple(config):
    tune.report({"loss": 1.0})


# --- what the properties assert ---


def refused(build, *names: str) -> BaseException:
    """`build()` raises ValueError or TypeError whose message contains each of `names`. Any other
    exception propagates and fails the test, with its traceback."""
    with pytest.raises((ValueError, TypeError)) as info:
        build()
    message = str(info.value)
    for name in names:
        assert name in message, f"{type(info.value).__name__} does not name {name!r}: {message}"
    return info.value


def explanation(message: str) -> str:
    """What a search-space error says after its `uniform(lower=..., upper=...): ` prefix, which
    names every argument whatever went wrong."""
    return message.rpartition("): ")[2]


def names_argument(message: str, argument: str) -> bool:
    return re.search(rf"\b{re.escape(argument)}\b", explanation(message)) is not None


# --- malformed values ---


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_inf(value) -> bool:
    return isinstance(value, float) and math.isinf(value)


def _is_finite_real(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# values of every kind a confused user (or a config file read as strings) might pass; no callables
NOT_NONE = st.one_of(
    st.booleans(),
    st.integers(),
    st.floats(),
    st.fractions(max_denominator=10),
    st.decimals(places=2, allow_nan=True),
    st.complex_numbers(max_magnitude=1e3, allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.integers()),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.frozensets(st.integers(), max_size=2),
    st.timedeltas(),
    st.builds(object),
)
ANY_VALUE = st.one_of(st.none(), NOT_NONE)
NOT_AN_INT = NOT_NONE.filter(lambda v: not _is_int(v))
# no ints here: a huge one is a number to some checks (a stop threshold) and too large to others
NOT_A_NUMBER = NOT_NONE.filter(lambda v: not _is_int(v) and not _is_finite_real(v))
NOT_A_STRING = NOT_NONE.filter(lambda v: not isinstance(v, str))
NAN_OR_INF = st.sampled_from([math.nan, math.inf, -math.inf])
FINITE = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
KEY = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8)


def not_one_of(*allowed: str):
    return st.one_of(NOT_NONE, st.text(max_size=6)).filter(
        lambda v: not (isinstance(v, str) and v in allowed)
    )


# --- search spaces ---

# each constructor with valid arguments; a property replaces one of them
DISTRIBUTIONS = {
    "uniform": (tune.uniform, {"lower": 0, "upper": 1}),
    "quniform": (tune.quniform, {"lower": 0, "upper": 1, "q": 0.5}),
    "loguniform": (tune.loguniform, {"lower": 1, "upper": 10, "base": 10}),
    "qloguniform": (tune.qloguniform, {"lower": 1, "upper": 100, "q": 1, "base": 10}),
    "randint": (tune.randint, {"lower": 0, "upper": 10}),
    "qrandint": (tune.qrandint, {"lower": 0, "upper": 10, "q": 2}),
    "lograndint": (tune.lograndint, {"lower": 1, "upper": 100, "base": 10}),
    "qlograndint": (tune.qlograndint, {"lower": 1, "upper": 100, "q": 5, "base": 10}),
    "randn": (tune.randn, {"mean": 0, "sd": 1}),
    "qrandn": (tune.qrandn, {"mean": 0, "sd": 1, "q": 0.5}),
    # the domain classes, built directly (as `tune.search.Float(...)`)
    "Float": (Float, {"lower": 0, "upper": 1}),
    "Float(q)": (Float, {"lower": 0, "upper": 1, "q": 0.5}),
    "Float(log)": (Float, {"lower": 1, "upper": 10, "base": 10}),
    "Integer": (Integer, {"lower": 0, "upper": 10}),
    "Integer(q)": (Integer, {"lower": 0, "upper": 10, "q": 2}),
}
INTEGER_KINDS = {"randint", "qrandint", "lograndint", "qlograndint", "Integer", "Integer(q)"}
LOG_KINDS = {"loguniform", "qloguniform", "lograndint", "qlograndint", "Float(log)"}
BOUNDED_KINDS = sorted(k for k, (_, args) in DISTRIBUTIONS.items() if "lower" in args)
Q_KINDS = sorted(k for k, (_, args) in DISTRIBUTIONS.items() if "q" in args)


def in_param_space(make):
    """Build the Tuner around the value, as a user would: the value is made in the call."""
    return lambda: tune.Tuner(simple, param_space={"x": make()})


@st.composite
def bounds_out_of_order(draw, kind: str):
    """lower >= upper; for the log kinds also lower <= 0 at times."""
    number = st.integers(-(10**6), 10**6) if kind in INTEGER_KINDS else FINITE
    a, b = draw(number), draw(number)
    return max(a, b), min(a, b)


@FAST
@given(data=st.data())
@pytest.mark.parametrize("kind", BOUNDED_KINDS)
def test_bounds_out_of_order_name_lower(kind, data):
    lower, upper = data.draw(bounds_out_of_order(kind))
    make, args = DISTRIBUTIONS[kind]
    error = refused(in_param_space(lambda: make(**{**args, "lower": lower, "upper": upper})))
    assert names_argument(str(error), "lower"), str(error)


@FAST
@given(data=st.data())
@pytest.mark.parametrize("kind", sorted(LOG_KINDS))
def test_log_scale_lower_not_positive_names_lower(kind, data):
    integer = kind in INTEGER_KINDS
    lower = data.draw(st.integers(max_value=0) if integer else st.floats(-1e12, 0))
    make, args = DISTRIBUTIONS[kind]
    error = refused(in_param_space(lambda: make(**{**args, "lower": lower})))
    assert names_argument(str(error), "lower"), str(error)


@FAST
@given(data=st.data())
@pytest.mark.parametrize("kind", Q_KINDS)
def test_zero_or_negative_q_names_q(kind, data):
    integer = kind in INTEGER_KINDS
    q = data.draw(st.integers(max_value=0) if integer else st.floats(-1e12, 0))
    make, args = DISTRIBUTIONS[kind]
    error = refused(in_param_space(lambda: make(**{**args, "q": q})))
    assert names_argument(str(error), "q"), str(error)


@FAST
@given(data=st.data())
@pytest.mark.parametrize("kind", sorted(DISTRIBUTIONS))
def test_non_numeric_or_non_finite_argument_is_named(kind, data):
    """Strings, None, lists, NaN, inf, complex, ints too large for a float, in any argument."""
    make, args = DISTRIBUTIONS[kind]
    argument = data.draw(st.sampled_from(sorted(args)))
    value = data.draw(
        st.one_of(NOT_A_NUMBER, NAN_OR_INF, st.integers(min_value=2**1024, max_value=2**1100))
    )
    error = refused(in_param_space(lambda: make(**{**args, argument: value})))
    assert names_argument(str(error), argument), str(error)


@FAST
@given(data=st.data())
@pytest.mark.parametrize(
    "kind", ["uniform", "loguniform", "randint", "lograndint", "Float", "Float(log)", "Integer"]
)
def test_valid_bounds_are_accepted(kind, data):
    """The other side of the properties above: validation refuses nothing that is valid."""
    if kind in INTEGER_KINDS:
        low = 1 if kind in LOG_KINDS else -(10**6)
        lower = data.draw(st.integers(low, 10**6))
        upper = data.draw(st.integers(lower + 1, 10**6 + 1))
    else:
        low = 1e-300 if kind in LOG_KINDS else -1e12
        lower = data.draw(st.floats(low, 1e11))
        upper = data.draw(st.floats(lower, 1e12, exclude_min=True))
    make, args = DISTRIBUTIONS[kind]
    domain = make(**{**args, "lower": lower, "upper": upper})
    tune.Tuner(
        tune.with_resources(simple, {"cpu": data.draw(st.floats(0, 64)), "slot": 1}),
        param_space={"x": domain},
        tune_config=tune.TuneConfig(
            num_samples=data.draw(st.integers(1, 10**6)),
            max_concurrent_trials=data.draw(st.none() | st.integers(1, 10**6)),
            time_budget_s=data.draw(st.none() | st.floats(1e-3, 1e9) | st.integers(1, 10**9)),
            seed=data.draw(st.none() | st.integers()),
        ),
        run_config=tune.RunConfig(stop={"training_iteration": data.draw(FINITE)}),
    )


EMPTY_OR_NOT_A_LIST = st.one_of(
    st.sampled_from([[], ()]),
    ANY_VALUE.filter(lambda v: not (isinstance(v, (list, tuple)) and v)),
)


@FAST
@given(categories=EMPTY_OR_NOT_A_LIST, direct=st.booleans())
def test_empty_or_non_list_choice_names_categories(categories, direct):
    make = Categorical if direct else tune.choice
    error = refused(in_param_space(lambda: make(categories)))
    assert names_argument(str(error), "categories"), str(error)


@FAST
@given(values=EMPTY_OR_NOT_A_LIST)
def test_grid_search_of_a_non_list_names_values(values):
    error = refused(in_param_space(lambda: tune.grid_search(values)))
    assert names_argument(str(error), "values"), str(error)


@FAST
@given(path=st.lists(KEY, min_size=1, max_size=3), values=EMPTY_OR_NOT_A_LIST)
def test_hand_written_grid_search_of_a_non_list_names_its_path(path, values):
    """`{"grid_search": ...}` written out by hand, anywhere in a nested param space."""
    space = {"grid_search": values}
    for key in reversed(path):
        space = {key: space}
    where = "param_space" + "".join(f"[{key!r}]" for key in path)
    refused(lambda: tune.Tuner(simple, param_space=space), where, "grid_search")


@FAST
@given(space=NOT_NONE.filter(lambda v: not isinstance(v, dict)))
def test_param_space_not_a_dict(space):
    refused(lambda: tune.Tuner(simple, param_space=space), "param_space")


def _generator():
    yield 1


UNCOPYABLE = {
    "lock": threading.Lock,
    "rlock": threading.RLock,
    "generator": _generator,
}


@FAST
@given(
    path=st.lists(st.one_of(KEY, st.just(0)), min_size=1, max_size=3).filter(
        lambda p: not _is_int(p[0])
    ),
    kind=st.sampled_from(sorted(UNCOPYABLE)),
)
def test_param_space_value_that_cannot_be_copied_names_its_path(path, kind):
    """Each trial gets its own copy of the param space: a lock or a generator in it is refused
    with the key that holds it (and a pointer to tune.with_parameters)."""
    value = UNCOPYABLE[kind]()
    for key in reversed(path):
        value = [value] if key == 0 else {key: value}
    where = "param_space" + "".join(f"[{key!r}]" for key in path)
    refused(lambda: tune.Tuner(simple, param_space=value), where, "with_parameters")


# --- stop criteria ---


@FAST
@given(
    key=KEY, threshold=st.one_of(NOT_A_NUMBER.filter(lambda v: not _is_inf(v)), st.just(math.nan))
)
def test_stop_threshold_that_is_not_a_number_names_the_key(key, threshold):
    """`stop={"loss": "0.1"}` and `stop={"loss": nan}` (never reached: the trial would never
    stop) are refused; an infinite threshold is a number and allowed, and `{"done": True}`
    is Ray Tune's flag criterion."""
    assume(not (key == "done" and isinstance(threshold, bool)))
    run_config = tune.RunConfig(stop={key: threshold})
    refused(lambda: tune.Tuner(simple, run_config=run_config), "stop", repr(key))


@FAST
@given(
    key=st.one_of(st.integers(), st.none(), st.floats(allow_nan=False), st.tuples(st.integers()))
)
def test_stop_key_that_is_not_a_string_is_named(key):
    run_config = tune.RunConfig(stop={key: 1})
    refused(lambda: tune.Tuner(simple, run_config=run_config), "stop", repr(key))


@FAST
@given(stop=NOT_NONE.filter(lambda v: not isinstance(v, dict)))
def test_stop_of_a_wrong_type_names_stop(stop):
    run_config = tune.RunConfig(stop=stop)
    refused(lambda: tune.Tuner(simple, run_config=run_config), "stop")


STOPPER_ARGUMENTS = {
    "timeout": (tune.TimeoutStopper, {}),
    "max_iter": (tune.MaximumIterationStopper, {}),
    "std": (tune.TrialPlateauStopper, {"metric": "loss"}),
    "num_results": (tune.TrialPlateauStopper, {"metric": "loss"}),
    "top": (tune.ExperimentPlateauStopper, {"metric": "loss"}),
}


@FAST
@given(
    argument=st.sampled_from(sorted(STOPPER_ARGUMENTS)),
    value=st.one_of(
        # an infinite timeout or std is a number (no limit), not a mistake
        NOT_A_NUMBER.filter(lambda v: not isinstance(v, datetime.timedelta) and not _is_inf(v)),
        st.integers(max_value=-1),
        st.just(math.nan),
    ),
)
def test_stopper_argument_that_is_not_a_count_or_duration_is_named(argument, value):
    make, args = STOPPER_ARGUMENTS[argument]
    refused(
        lambda: tune.Tuner(
            simple, run_config=tune.RunConfig(stop=make(**args, **{argument: value}))
        ),
        argument,
    )


@FAST
@given(
    kind=st.sampled_from([tune.TrialPlateauStopper, tune.ExperimentPlateauStopper]),
    metric=st.one_of(NOT_A_STRING, st.just("")),
)
def test_plateau_stopper_metric_that_is_not_a_name_is_refused(kind, metric):
    """Without this check, a bad metric failed later, inside the controller, as an
    AttributeError (`int` has no `split`)."""
    refused(lambda: tune.Tuner(simple, run_config=tune.RunConfig(stop=kind(metric))), "metric")


# --- TuneConfig ---

TUNE_CONFIG = {
    "num_samples": st.one_of(NOT_AN_INT, st.integers(max_value=0).filter(lambda n: n != -1)),
    "max_concurrent_trials": st.one_of(NOT_AN_INT, st.integers(max_value=0)),
    "time_budget_s": st.one_of(
        NOT_NONE.filter(
            lambda v: (
                not (
                    (_is_finite_real(v) and not isinstance(v, (Fraction,)) and v > 0)
                    or (isinstance(v, datetime.timedelta) and v.total_seconds() > 0)
                )
            )
        ),
        st.floats(max_value=0),
        st.just(math.nan),
        st.timedeltas(max_value=datetime.timedelta(0)),
    ),
    "metric": st.one_of(NOT_A_STRING, st.just("")),
    "seed": NOT_AN_INT,
    "scheduler": NOT_NONE,
    "search_alg": NOT_NONE,
    "trial_name_creator": NOT_NONE,
    "trial_dirname_creator": NOT_NONE,
}


@FAST
@given(data=st.data())
@pytest.mark.parametrize("field", sorted(TUNE_CONFIG))
def test_tune_config_field_is_named(field, data):
    value = data.draw(TUNE_CONFIG[field])
    if field == "time_budget_s" and _is_inf(value):
        value = -math.inf  # an infinite budget is allowed: no time limit
    config = tune.TuneConfig(**{field: value})
    refused(lambda: tune.Tuner(simple, tune_config=config), field)


@FAST
@given(mode=not_one_of("min", "max"))
def test_mode_other_than_min_or_max_is_named(mode):
    config = tune.TuneConfig(metric="loss", mode=mode)
    refused(lambda: tune.Tuner(simple, tune_config=config), "mode")


def _truthy(value) -> bool:
    # not `.filter(bool)`: Hypothesis rewrites that one into collection sizes, and fails doing so
    return bool(value)


@FAST
@given(argument=st.sampled_from(["tune_config", "run_config"]), config=NOT_NONE.filter(_truthy))
def test_config_of_a_wrong_type_is_named(argument, config):
    refused(lambda: tune.Tuner(simple, **{argument: config}), argument)


@pytest.mark.parametrize("argument", ["tune_config", "run_config"])
@pytest.mark.parametrize("config", [{}, 0], ids=repr)
def test_falsy_config_of_a_wrong_type_is_named(argument, config):
    refused(lambda: tune.Tuner(simple, **{argument: config}), argument)


# --- CheckpointConfig and FailureConfig ---

RUN_CONFIG = {
    "checkpoint_config.num_to_keep": st.one_of(NOT_AN_INT, st.integers(max_value=0)),
    "checkpoint_config.checkpoint_frequency": st.one_of(NOT_AN_INT, st.integers(max_value=-1)),
    "checkpoint_config.checkpoint_score_order": not_one_of("min", "max"),
    "checkpoint_config.checkpoint_score_attribute": st.one_of(NOT_A_STRING, st.just("")),
    "checkpoint_config.checkpoint_at_end": NOT_NONE.filter(lambda v: not isinstance(v, bool)),
    "failure_config.max_failures": st.one_of(st.none(), NOT_AN_INT, st.integers(max_value=-2)),
    "failure_config.fail_fast": not_one_of("raise").filter(lambda v: not isinstance(v, bool)),
    "checkpoint_config": NOT_NONE,
    "failure_config": NOT_NONE,
}


def run_config_with(field: str, value) -> tune.RunConfig:
    """`RunConfig(checkpoint_config=CheckpointConfig(num_to_keep=value))` and the like."""
    owner, _, inner = field.partition(".")
    if inner:
        kind = tune.CheckpointConfig if owner == "checkpoint_config" else tune.FailureConfig
        value = kind(**{inner: value})
    return tune.RunConfig(**{owner: value})


@FAST
@given(data=st.data())
@pytest.mark.parametrize("field", sorted(RUN_CONFIG))
def test_checkpoint_and_failure_config_field_is_named(field, data):
    run_config = run_config_with(field, data.draw(RUN_CONFIG[field]))
    refused(lambda: tune.Tuner(simple, run_config=run_config), field.rpartition(".")[2])


# --- resources ---

BAD_AMOUNT = st.one_of(
    st.floats(max_value=-1e-9, allow_infinity=False),
    st.integers(max_value=-1),
    NAN_OR_INF,
    NOT_A_NUMBER,
    st.integers(min_value=2**1024, max_value=2**1100),
)
RESOURCE_NAME = st.one_of(st.sampled_from(["cpu", "gpu", "CPU", "GPU", "memory", "slot"]), KEY)


@FAST
@given(name=RESOURCE_NAME, amount=BAD_AMOUNT, placement_group=st.booleans())
def test_bad_resource_amount_names_the_resource(name, amount, placement_group):
    def build():
        request = {"cpu": 1, name: amount}
        if placement_group:
            request = tune.PlacementGroupFactory([request])
        return tune.Tuner(tune.with_resources(simple, request))

    refused(build, repr(name))


@FAST
@given(resources=NOT_NONE.filter(lambda v: not isinstance(v, dict)))
def test_resources_of_a_wrong_type_are_named(resources):
    refused(lambda: tune.Tuner(tune.with_resources(simple, resources)), "resources")


@FAST
@given(name=st.one_of(st.integers(), st.none(), st.tuples(st.integers()), st.binary(max_size=3)))
def test_resource_name_that_is_not_a_string_is_named(name):
    refused(lambda: tune.Tuner(tune.with_resources(simple, {name: 1})), "resource", repr(name))


# --- checks of what reaches storage: refused before anything is written ---


def nothing_written(storage: str) -> bool:
    """No experiment (no tuner.pkl, no experiment_state) anywhere under the storage path."""
    for _root, _dirs, files in os.walk(storage):
        if any(f == "tuner.pkl" or f.startswith("experiment_") for f in files):
            return False
    return not os.path.exists(storage) or not os.listdir(storage)


def _trainable_closing_over(value):
    def uses_it(config):
        tune.report({"x": id(value)})

    return uses_it


def _trainable_class_holding(value):
    class HoldsIt(tune.Trainable):
        held = value

        def step(self):
            return {"x": 1}

    return HoldsIt


UNPICKLABLE_TRAINABLES = {
    "function": _trainable_closing_over,
    "function with resources": lambda v: tune.with_resources(
        _trainable_closing_over(v), {"cpu": 1}
    ),
    "Trainable class": _trainable_class_holding,
}


@WITH_STORAGE
@given(
    wrapper=st.sampled_from(sorted(UNPICKLABLE_TRAINABLES)),
    kind=st.sampled_from(sorted(UNCOPYABLE)),
)
def test_unpicklable_trainable_is_refused_before_anything_is_written(storage, wrapper, kind):
    trainable = UNPICKLABLE_TRAINABLES[wrapper](UNCOPYABLE[kind]())
    name = f"unpicklable_{uuid.uuid4().hex[:8]}"
    refused(
        lambda: tune.Tuner(trainable, run_config=tune.RunConfig(storage_path=storage, name=name)),
        "cannot be pickled",
        trainable.__name__,
    )
    assert nothing_written(storage)


def _parses_to_positive_int(raw: str) -> bool:
    try:
        return int(raw) >= 1
    except ValueError:
        return False


@WITH_STORAGE
@given(
    raw=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8
    ).filter(lambda s: not _parses_to_positive_int(s))
)
def test_bad_pending_trials_setting_is_refused_before_anything_is_written(storage, raw):
    saved = os.environ.get("RTUNE_MAX_PENDING_TRIALS")
    os.environ["RTUNE_MAX_PENDING_TRIALS"] = raw
    try:
        run_config = tune.RunConfig(storage_path=storage, name="x")
        refused(lambda: tune.Tuner(simple, run_config=run_config).fit(), "RTUNE_MAX_PENDING_TRIALS")
    finally:
        if saved is None:
            del os.environ["RTUNE_MAX_PENDING_TRIALS"]
        else:
            os.environ["RTUNE_MAX_PENDING_TRIALS"] = saved
    assert nothing_written(storage)


SECRET = st.text(string.ascii_letters + string.digits, min_size=12, max_size=20)


@WITH_STORAGE
@given(user=KEY, secret=SECRET, in_query=st.booleans())
def test_storage_uri_with_credentials_is_refused_without_echoing_the_secret(
    storage, user, secret, in_query
):
    uri = (
        f"s3://bucket/exps?access_key={user}&secret_key={secret}"
        if in_query
        else f"s3://{user}:{secret}@bucket/exps"
    )
    run_config = tune.RunConfig(storage_path=uri, name="x")
    error = refused(
        lambda: tune.Tuner(simple, run_config=run_config).fit(), "storage path", "credentials"
    )
    assert secret not in str(error)
    assert nothing_written(storage)
