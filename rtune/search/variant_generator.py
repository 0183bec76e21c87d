"""`BasicVariantGenerator`: grid search and random sampling over a param space, resumable exactly.

Trial number i's config is a pure function of (param space, seed, i): its grid combination is
computed from i, and its random values come from a `random.Random` seeded with (seed, i). So the
generator's state is just how many trials it has suggested, and a generator restored from that state
creates exactly the trials that were still missing, with the configs an uninterrupted run would
have made.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from numbers import Integral
from typing import Any

from rtune.search.sample import Domain, Function
from rtune.search.searcher import Searcher, SearcherNeeds
from rtune.search.suggestions import merged

Path = tuple[Any, ...]


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value


def _is_variable(value: Any) -> bool:
    return _is_grid(value) or isinstance(value, Domain)


def _path_str(path: Path, root: str = "param_space") -> str:
    return root + "".join(f"[{key!r}]" for key in path)


def _find(obj: Any, match: Callable[[Any], bool], path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Nodes for which `match` holds, depth-first in insertion order, searching dicts and lists."""
    if match(obj):
        yield path, obj
    elif isinstance(obj, dict):
        for key, child in obj.items():
            yield from _find(child, match, (*path, key))
    elif isinstance(obj, list):
        for index, child in enumerate(obj):
            yield from _find(child, match, (*path, index))


def _grid_vars(space: dict[str, Any]) -> list[tuple[Path, list[Any]]]:
    return [(path, var["grid_search"]) for path, var in _find(space, _is_grid)]


def _grid_size(space: dict[str, Any]) -> int:
    size = 1
    for _, values in _grid_vars(space):
        size *= len(values)
    return size


def _validate_space(space: dict[str, Any], root: str) -> None:
    for path, var in _find(space, _is_grid):
        values = var["grid_search"]
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(
                f"{_path_str(path, root)}: grid_search needs a non-empty list, got {values!r}"
            )
        if any(True for _ in _find(list(values), _is_grid)):
            raise ValueError(
                f"{_path_str(path, root)}: grid_search values may not contain a grid_search"
            )


def _copy_space(space: dict[str, Any], root: str) -> dict[str, Any]:
    """A deep copy of `space`; a value that cannot be copied (a lock, a generator, an open file)
    is named by its path, since each trial gets its own copy of every value."""
    try:
        return copy.deepcopy(space)
    except Exception as exc:
        path = _first_uncopyable(space)
        raise TypeError(
            f"{_path_str(path, root)}: this value cannot be copied into each trial's config "
            f"({type(exc).__name__}: {exc}); pass such objects with tune.with_parameters"
        ) from exc


def _first_uncopyable(obj: Any, path: Path = ()) -> Path:
    """The path of the innermost dict/list entry whose deep copy fails."""
    children = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, child in children:
        try:
            copy.deepcopy(child)
        except Exception:
            return _first_uncopyable(child, (*path, key))
    return path


def _instantiate(
    obj: Any,
    rng: random.Random,
    chosen: dict[Path, Any],
    path: Path = (),
    grid_rng: random.Random | None = None,
) -> Any:
    """A fresh copy of `obj`, grid values chosen and domains sampled; `sample_from` comes later.
    Domains inside a chosen grid value draw from `grid_rng` (default: `rng`)."""
    if path in chosen:
        return _instantiate(chosen[path], grid_rng or rng, {}, path)
    if isinstance(obj, Function):
        return obj
    if isinstance(obj, Domain):
        return _instantiate(obj.sample(rng), rng, {}, path)
    if isinstance(obj, dict):
        return {
            key: _instantiate(value, rng, chosen, (*path, key), grid_rng)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [
            _instantiate(value, rng, chosen, (*path, index), grid_rng)
            for index, value in enumerate(obj)
        ]
    return copy.deepcopy(obj)


def _seed_of(random_state: Any) -> int:
    """Ray Tune's `random_state`: an int seed, a numpy Generator or RandomState to draw one from,
    or None for numpy's global generator (so `np.random.seed(...)` makes a run repeatable, as in
    Ray Tune)."""
    import numpy as np

    if random_state is None:
        return int(np.random.randint(0, 2**62, dtype=np.int64))
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**62))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**62, dtype=np.int64))
    raise TypeError(
        "BasicVariantGenerator: random_state must be an int, a numpy Generator or RandomState, "
        f"or None; got {type(random_state).__name__}"
    )


class _Unresolved(Exception):
    """A `sample_from` function read a value that is itself still a `sample_from`."""


class _ConfigView(dict):  # type: ignore[type-arg]
    """What `sample_from` reads: `spec.config.lr` or `spec["config"]["lr"]`, as in Ray Tune."""

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, Function):
            raise _Unresolved(key)
        return _ConfigView(value) if isinstance(value, dict) else value

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


class _SpecView(_ConfigView):
    """What a `sample_from` function gets: the config itself (`config["lr"]`, as Ray Tune's
    docs now write it), which also answers the older `spec.config.lr` / `spec["config"]["lr"]`."""

    def __getitem__(self, key: Any) -> Any:
        if key == "config":
            return _ConfigView(self)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        return key == "config" or super().__contains__(key)


def _plain(value: Any) -> Any:
    return {k: _plain(v) for k, v in dict.items(value)} if isinstance(value, dict) else value


def _get(config: Any, path: Path) -> Any:
    for key in path:
        config = config[key]
    return config


def _resolve_functions(config: dict[str, Any], rng: random.Random) -> None:
    """Call each `sample_from` once the values it reads are resolved (in passes, like Ray Tune)."""
    pending = [path for path, _ in _find(config, lambda v: isinstance(v, Function))]
    while pending:
        waiting = []
        for path in pending:
            try:
                value = _get(config, path).sample(rng, _SpecView(config))
            except _Unresolved:
                waiting.append(path)
                continue
            _get(config, path[:-1])[path[-1]] = _plain(value)
        if len(waiting) == len(pending):
            where = ", ".join(_path_str(p) for p in waiting)
            raise ValueError(
                f"{where}: sample_from reads values that are never resolved (circular?)"
            )
        pending = waiting


def _format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class BasicVariantGenerator(Searcher):
    """Every grid combination `num_samples` times, random domains sampled fresh for each trial.

    `points_to_evaluate` come first, as in Ray Tune: each is merged over the param space, replaces
    one of the `num_samples` samples and is expanded over the grid keys it leaves unset. With
    `max_concurrent` > 0, `suggest()` returns None while that many suggested trials are unfinished.
    """

    needs = SearcherNeeds(suggests_ahead=True, counts_trials=True)

    def __init__(
        self,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        max_concurrent: int = 0,
        constant_grid_search: bool = False,
        random_state: Any = None,
        *,
        param_space: dict[str, Any] | None = None,
        num_samples: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if seed is not None and random_state is not None:
            raise ValueError("BasicVariantGenerator takes seed or random_state, not both")
        seed = _seed_of(random_state) if seed is None else seed
        # None: TuneConfig(num_samples=...) decides, as for Ray Tune's BasicVariantGenerator
        self._num_samples_given = num_samples is not None
        num_samples = 1 if num_samples is None else num_samples
        for name, value, minimum in (
            ("num_samples", num_samples, 1),
            ("max_concurrent", max_concurrent, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, (list, tuple)):
            raise TypeError(
                "points_to_evaluate must be a list of dicts, "
                f"got {type(points_to_evaluate).__name__}"
            )
        for index, point in enumerate(points_to_evaluate or []):
            if not isinstance(point, dict):
                raise TypeError(
                    f"points_to_evaluate[{index}] must be a dict, got {type(point).__name__}"
                )
        self._num_samples = int(num_samples)
        self._max_concurrent = int(max_concurrent)
        self._seed = int(seed)
        self._constant_grid_search = bool(constant_grid_search)
        self._points = [
            _copy_space(point, f"points_to_evaluate[{index}]")
            for index, point in enumerate(points_to_evaluate or [])
        ]
        self._space_given = param_space is not None
        self._set_space({} if param_space is None else param_space)
        self._next_index = 0
        self._live: set[str] = set()

    def _set_space(self, param_space: dict[str, Any]) -> None:
        if not isinstance(param_space, dict):
            raise TypeError(f"param_space must be a dict, got {type(param_space).__name__}")
        if _is_grid(param_space):
            raise ValueError("param_space must be a dict of parameters, not itself a grid_search")
        _validate_space(param_space, "param_space")
        self._param_space = _copy_space(param_space, "param_space")
        self._point_spaces = [merged(self._param_space, point) for point in self._points]
        for index, space in enumerate(self._point_spaces):
            _validate_space(space, f"points_to_evaluate[{index}]")

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any] | None, **spec: Any
    ) -> bool:
        """Adopt `config` when built without a param space, and `num_samples` (from spec) when
        built without one, Ray-style.

        Returns False when this generator already has a different param space.
        """
        super().set_search_properties(metric, mode, config)
        # (getattr: one pickled before this attribute existed had its count given)
        if spec.get("num_samples") is not None and not getattr(self, "_num_samples_given", True):
            self._num_samples = max(1, int(spec["num_samples"]))
        if not config:
            return True
        if self._space_given:
            return config == self._param_space
        self._set_space(config)
        self._space_given = True
        return True

    def _locate(self, index: int) -> tuple[dict[str, Any], int, int] | None:
        """The space, grid combination number and sample number (points first) of trial
        `index`, or None past the last trial."""
        for sample, space in enumerate(self._point_spaces):
            size = _grid_size(space)
            if index < size:
                return space, index, sample
            index -= size
        size = _grid_size(self._param_space)
        if index < self._samples_left() * size:
            return self._param_space, index % size, len(self._points) + index // size
        return None

    def _samples_left(self) -> int:
        return max(0, self._num_samples - len(self._points))

    def _config_for(self, index: int) -> dict[str, Any] | None:
        """The config of trial number `index` (0-based), or None when there is no such trial."""
        located = self._locate(index)
        if located is None:
            return None
        space, combination, sample = located
        chosen = {}
        for path, values in _grid_vars(space):
            chosen[path] = values[combination % len(values)]
            combination //= len(values)
        rng = random.Random(f"rtune:{self._seed}:{index}")
        # constant_grid_search: one draw of the random values per sample, shared by its grid
        # combinations (grid values that are themselves domains still draw per trial)
        shared = getattr(self, "_constant_grid_search", False)
        sampled = random.Random(f"rtune:{self._seed}:sample:{sample}") if shared else rng
        config = _instantiate(space, sampled, chosen, grid_rng=rng)
        _resolve_functions(config, rng)
        return config

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._max_concurrent and len(self._live) >= self._max_concurrent:
            return None
        config = self._config_for(self._next_index)
        if config is None:
            return Searcher.FINISHED
        self._next_index += 1
        self._live.add(trial_id)
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self._live.discard(trial_id)

    @property
    def total_trials(self) -> int:
        points = sum(_grid_size(space) for space in self._point_spaces)
        return points + self._samples_left() * _grid_size(self._param_space)

    def experiment_tag(self, trial_id: str, config: dict[str, Any]) -> str:
        """The grid and sampled values of `config`, e.g. "lr=0.01,model/depth=3"."""
        parts = []
        for path, _ in _find(self._param_space, _is_variable):
            try:
                value = _get(config, path)
            except (KeyError, IndexError, TypeError):
                continue
            parts.append("/".join(map(str, path)) + "=" + _format_value(value))
        return ",".join(parts)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["_live"] = set(self._live)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._live = set(self._live)

    def refresh_space(self, param_space: dict[str, Any]) -> None:
        """Swap in an equal param_space with fresh object references (Tuner.restore)."""
        self._param_space = copy.deepcopy(param_space)
        self._point_spaces = [merged(self._param_space, point) for point in self._points]
