"""Which checkpoints a trial keeps, and which of them are its best: Ray Tune 2.60's rule, pure.

Ray Tune ranks each trial's checkpoints worst first, best last: a checkpoint whose result has the
score attribute is inserted after every kept one that scores no higher (ties keep report order);
one without the attribute (or with no attribute configured) goes to the end. The best are the last
`num_to_keep` of that ranking (all of them when it is None). Everything else is deleted, except the
latest checkpoint, which rtune (like Ray Tune) keeps on disk to resume from but does not list among
the best. Entries are the controller's checkpoint entries, in report order; a restore recomputes the
same ranking from the same stored entries.
"""

from __future__ import annotations

import math
from typing import Any


def _score(entry: dict, attribute: str | None, order: str) -> tuple[bool, float]:
    value = entry.get("metrics", {}).get(attribute) if attribute else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        value = -math.inf
    if math.isnan(value):
        return (False, -math.inf)
    return (True, value if order == "max" else -value)


def ranked(entries: list[dict], checkpoint_config: Any) -> list[dict]:
    """`entries` (report order) ranked worst first, best last, as Ray Tune orders them."""
    attribute = checkpoint_config.checkpoint_score_attribute
    order = checkpoint_config.checkpoint_score_order
    ranking: list[dict] = []
    for entry in entries:
        if attribute is None or attribute not in entry.get("metrics", {}):
            ranking.append(entry)
            continue
        key = _score(entry, attribute, order)
        at = 0
        while at < len(ranking) and _score(ranking[at], attribute, order) <= key:
            at += 1
        ranking.insert(at, entry)
    return ranking


def best(entries: list[dict], checkpoint_config: Any) -> list[dict]:
    """The best checkpoints, worst of them first (Ray Tune's `best_checkpoints` order)."""
    keep = checkpoint_config.num_to_keep
    ranking = ranked(entries, checkpoint_config)
    return ranking if keep is None else ranking[-keep:]


def to_delete(entries: list[dict], checkpoint_config: Any, pinned: Any = frozenset()) -> list[dict]:
    """Entries neither among the best nor the latest (the last in report order) nor `pinned`
    (paths another trial will restore from: an exploit's donor checkpoint). Called per
    checkpoint: with nothing to delete it ranks nothing (`num_to_keep=None` keeps all)."""
    keep = checkpoint_config.num_to_keep
    if keep is None or len(entries) <= keep:
        return []
    kept = best(entries, checkpoint_config)
    latest = entries[-1] if entries else None
    return [
        e
        for e in entries
        if e is not latest and not any(e is k for k in kept) and e["path"] not in pinned
    ]


def provenance(trial_id: str, epoch: int) -> dict:
    """What a checkpoint record says of who wrote it: the trial, and which run of it (its
    epoch). Records of the first stored format have neither: they are their trial's own."""
    return {"trial_id": trial_id, "epoch": epoch}


def is_foreign(entry: dict | None, trial_id: str) -> bool:
    """Whether a trial's checkpoint record is another trial's (an exploit's donor)."""
    return entry is not None and entry.get("trial_id", trial_id) != trial_id
