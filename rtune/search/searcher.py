"""The `Searcher` interface: what the controller asks for new trial configs, with Ray Tune's names.

A searcher only proposes configs and listens to results; the controller owns trials and persistence.
Its whole state goes through `get_state()`/`set_state()` so an experiment can be resumed with the
searcher exactly where it was.
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from typing import Any, ClassVar

import cloudpickle


@dataclass(frozen=True)
class SearcherNeeds:
    """What a searcher needs of the engine, declared so a wrapper keeps what it wraps.

    `suggests_ahead`: its suggestions never depend on results, so the engine may ask for them
    early (to keep actors fed, and in the driver for the first trials). `counts_trials`: it ends
    by itself (`Searcher.FINISHED`) after `num_samples`; otherwise the engine stops asking once
    `TuneConfig.num_samples` trials exist."""

    suggests_ahead: bool = False
    counts_trials: bool = False


class Searcher:
    """Base class for search algorithms.

    `suggest()` returns a config, `None` ("nothing now, ask again later", e.g. while waiting for
    results) or `Searcher.FINISHED` ("no more trials, ever").
    """

    FINISHED: ClassVar[str] = "FINISHED"
    CKPT_FILE_TMPL: ClassVar[str] = "searcher-state-{}.pkl"
    # a model-based searcher suggests better the later it is asked, and does not count
    needs: ClassVar[SearcherNeeds] = SearcherNeeds()

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"Searcher mode must be 'min', 'max' or None, got {mode!r}")
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any] | None, **spec: Any
    ) -> bool:
        """Fill in the metric and mode from `TuneConfig` unless the searcher was given its own.

        Returns False when the searcher cannot accept these properties; the caller reports that.
        """
        if self._metric is None:
            self._metric = metric
        if self._mode is None:
            self._mode = mode
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Whether this searcher limits how many of its trials run at once by itself (then
        `ConcurrencyLimiter` leaves that to it). The engine limits running trials to
        `TuneConfig.max_concurrent_trials` in any case."""
        return False

    def _check_num_samples(self, num_samples: int) -> None:
        """Refuse, before any trial starts, a `TuneConfig.num_samples` this searcher cannot
        honour (`Repeater`: not a multiple of `repeat`); a wrapper asks what it wraps."""

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The config for a new trial `trial_id`, `None` for "not now", or `Searcher.FINISHED`."""
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Called with each intermediate result of a trial."""

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Called once when a trial ends: finished, stopped (`result` is its last) or errored."""

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Tell the searcher of a point evaluated outside this run (a searcher that can learn
        from one overrides this)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not take points evaluated elsewhere (add_evaluated_point)"
        )

    def add_evaluated_trials(self, trials_or_analysis: Any, metric: str) -> None:
        """`add_evaluated_point` for each trial of an earlier run: a `ResultGrid`, one `Result`
        or a list of them. A trial that errored is passed with `error=True`; one that never
        reported `metric` is skipped."""
        results = (
            [trials_or_analysis] if hasattr(trials_or_analysis, "metrics") else trials_or_analysis
        )
        for result in results:
            value = (result.metrics or {}).get(metric)
            if value is None and result.error is None:
                continue
            intermediate = None
            frame = getattr(result, "metrics_dataframe", None)
            if frame is not None and metric in frame:
                intermediate = [float(v) for v in frame[metric].dropna()]
            self.add_evaluated_point(
                result.config,
                value,
                error=result.error is not None,
                intermediate_values=intermediate,
            )

    def save(self, checkpoint_path: str) -> None:
        """Write this searcher's state (`get_state()`) to a file, whole or not at all. rtune
        stores the state with the experiment by itself; this is for users who keep one."""
        directory = os.path.dirname(os.path.abspath(checkpoint_path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".searcher-")
        try:
            with os.fdopen(fd, "wb") as out:
                cloudpickle.dump(self.get_state(), out)
            os.replace(tmp, checkpoint_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def restore(self, checkpoint_path: str) -> None:
        """Continue from a file `save()` wrote."""
        with open(checkpoint_path, "rb") as src:
            self.set_state(cloudpickle.load(src))

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """`save()` into `checkpoint_dir`, as `searcher-state-<session_str>.pkl`."""
        os.makedirs(checkpoint_dir, exist_ok=True)
        self.save(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format(session_str)))

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """`restore()` from the newest state file `save_to_dir()` wrote in `checkpoint_dir`."""
        pattern = self.CKPT_FILE_TMPL.format("*")
        found = glob.glob(os.path.join(checkpoint_dir, pattern))
        if not found:
            raise RuntimeError(
                f"{type(self).__name__}.restore_from_dir: no searcher state file ({pattern}) "
                f"in {checkpoint_dir}"
            )
        self.restore(max(found, key=os.path.getmtime))

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue this searcher later; must pickle with cloudpickle.

        The default is a shallow copy of the attributes: the caller pickles it right away, and a
        deep copy would fail on attributes that cannot be copied but can be pickled.
        """
        return dict(self.__dict__)

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a state returned by `get_state()`."""
        self.__dict__.update(state)

    def experiment_tag(self, trial_id: str, config: dict[str, Any]) -> str:
        """A short display string of what distinguishes this trial's config (e.g. "lr=0.01")."""
        return ""

    @property
    def total_trials(self) -> int | None:
        """How many trials this searcher will suggest in all, or None when it cannot know."""
        return None
