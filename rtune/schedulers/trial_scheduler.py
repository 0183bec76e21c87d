"""Trial schedulers: strategy objects that only return decisions; the controller acts on them."""

from __future__ import annotations

from typing import Any


class TrialScheduler:
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, trial_id: str, config: dict) -> None:
        pass

    def on_trial_result(self, trial_id: str, result: dict) -> str:
        return self.CONTINUE

    def on_trial_complete(self, trial_id: str, result: dict | None) -> None:
        pass

    def on_trial_error(self, trial_id: str) -> None:
        pass

    def choose_trial_to_run(self, pending_trial_ids: list[str]) -> str | None:
        """Which waiting trial starts next; None to start none now."""
        return pending_trial_ids[0] if pending_trial_ids else None

    def get_state(self) -> dict:
        return dict(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def debug_string(self) -> str:
        return f"Using {type(self).__name__.replace('Scheduler', '')} scheduling algorithm."


class FIFOScheduler(TrialScheduler):
    """First in, first out: trials run in the order the searcher created them, to completion."""

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."
