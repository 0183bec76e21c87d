"""One writer per experiment: the lease file in the experiment's own storage.

Guarantees owned here:
- A run holds `.rtune_lease.json` at the experiment's root from before its first write (the
  metadata) until its end (normal, drain, fail_fast, force stop). The file says who holds it (host,
  pid of the driver that called fit(), Ray cluster, controller actor name), since when, a random
  owner token, and a renewal counter the holder bumps every `ttl_s / 5` seconds.
- A second `fit()` (new or restored) on an experiment whose lease is live is refused before it
  writes anything, with an error naming the path and the owner (`ExperimentLeased`).
- A lease whose holder is dead never locks a restore out. It is taken over at once when the holder
  is known dead: on this host with its pid gone, or on this Ray cluster with its controller actor
  gone. Otherwise the waiter watches the renewal counter for `ttl_s` (default 15 s,
  RTUNE_LEASE_TTL_S; at most 30 s) on its own clock, never comparing clocks across hosts: a
  counter that moved means a live holder (refused), one that did not means an expired lease
  (taken over). A damaged lease file counts as expired, with a warning naming it.
- Taking a lease is write-then-verify: write our token, wait a moment, read it back. On a local
  filesystem a new lease is an exclusive create (O_EXCL), so two starters cannot both win; taking
  over a dead one is write-then-verify there too. On object stores (no atomic create through
  pyarrow) write-then-verify narrows the race of two starters in the same instant; it does not
  close it. The loser of such a race finds the token changed at its next renewal and stops.
- A holder that finds its lease taken by another token stops writing (`LeaseKeeper.lost`).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from rtune import _settings
from rtune._durable.storage import Storage, encode_json

LEASE_FILE = ".rtune_lease.json"
MAX_TTL_S = _settings.MAX_LEASE_TTL_S
VERIFY_PAUSE_S = 0.2  # between writing our token and reading it back
LEASE_FIELDS = ("token", "host", "pid", "started_at", "renewals", "ttl_s")


class ExperimentLeased(RuntimeError):
    """Another live run holds the experiment: refused before anything was written."""


@dataclass
class LeaseRecord:
    """What the lease file holds: who owns the experiment, and the renewal counter."""

    token: str
    host: str
    pid: int
    started_at: float  # the holder's wall clock: shown to users, never compared
    ttl_s: float
    cluster: str = ""  # the GCS address of the holder's Ray cluster
    cluster_id: str = ""
    controller: str = ""  # the controller's named actor, in the "rtune" namespace
    controller_started: bool = False  # the controller renews from here on
    renewals: int = 0
    renewed_at: float = 0.0

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        where = f" on Ray cluster {self.cluster}" if self.cluster else ""
        return f"pid {self.pid} on host {self.host}{where}, since {since}"


def lease_path(storage: Storage) -> str:
    return storage.uri(LEASE_FILE)


DAMAGED = "damaged"
# tokens of the leases fit() calls of this process hold now: a lease naming this process with
# another token was left by one of its fit() calls that has ended (its release failed)
_HELD_HERE: set[str] = set()


def read_lease(storage: Storage) -> LeaseRecord | str | None:
    """The lease on the experiment; None when there is none; DAMAGED (warned) when it cannot
    be read as one, which counts as expired."""
    try:
        data = json.loads(storage.read_bytes(LEASE_FILE))
        if not isinstance(data, dict) or not all(key in data for key in LEASE_FIELDS):
            raise ValueError("fields are missing")
        known = {key: data[key] for key in LeaseRecord.__dataclass_fields__ if key in data}
        record = LeaseRecord(**known)
        record.pid, record.renewals = int(record.pid), int(record.renewals)
        record.ttl_s = float(record.ttl_s)
        return record
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        print(
            f"rtune: WARNING: the lease file {lease_path(storage)} is damaged ({exc}); "
            "treating it as expired",
            file=sys.stderr,
        )
        return DAMAGED


def new_record(cluster: str = "", cluster_id: str = "", controller: str = "") -> LeaseRecord:
    return LeaseRecord(
        token=secrets.token_hex(16),
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time(),
        ttl_s=_settings.lease_ttl_s(),
        cluster=cluster,
        cluster_id=cluster_id,
        controller=controller,
    )


def acquire(
    storage: Storage,
    mine: LeaseRecord,
    controller_alive: Callable[[LeaseRecord], bool | None] = lambda held: None,
) -> None:
    """Take the experiment's lease for `mine`, or raise `ExperimentLeased` naming the holder.
    `controller_alive(held)`: whether the holder's controller actor lives, when this process is
    on the holder's Ray cluster and can tell (None: cannot tell)."""
    _take(storage, mine, controller_alive)
    _HELD_HERE.add(mine.token)


def _take(
    storage: Storage, mine: LeaseRecord, controller_alive: Callable[[LeaseRecord], bool | None]
) -> None:
    watched: tuple[str, int, float] | None = None  # (token, renewals) seen first, when (ours)
    while True:
        held = read_lease(storage)
        if held is None:
            if _create(storage, mine):
                return
            continue
        if held == DAMAGED:
            _write(storage, mine)
            if _verified(storage, mine):
                return
            continue
        assert isinstance(held, LeaseRecord)
        verdict = _holder_alive(held, controller_alive)
        if verdict is True:
            raise _refusal(storage, held)
        if verdict is None:
            now = time.monotonic()
            ttl = min(max(held.ttl_s, 0.1), MAX_TTL_S)
            if watched is None:
                watched = (held.token, held.renewals, now)
                print(
                    f"rtune: {lease_path(storage)} is held by {held.describe()}; waiting up to "
                    f"{ttl:g} s for it to be renewed (the holder is alive) or to expire",
                    file=sys.stderr,
                )
            elif (held.token, held.renewals) != watched[:2]:  # renewed, or taken: a live holder
                raise _refusal(storage, held)
            if now - watched[2] < ttl:
                time.sleep(min(0.5, ttl / 5))
                continue
        print(
            f"rtune: taking over the lease of {held.describe()} on {storage.uri()}: "
            + ("its holder is gone" if verdict is False else f"not renewed for {ttl:g} s"),
            file=sys.stderr,
        )
        _write(storage, mine)
        if _verified(storage, mine):
            return
        watched = None


def _holder_alive(
    held: LeaseRecord, controller_alive: Callable[[LeaseRecord], bool | None]
) -> bool | None:
    """True: known alive; False: known dead; None: only its renewals can tell."""
    here = held.host == socket.gethostname()
    if here and not _pid_alive(held.pid):
        return False
    if here and held.pid == os.getpid() and held.token not in _HELD_HERE:
        return False  # an ended fit() of this process; its controller was killed with it
    alive = controller_alive(held) if held.controller_started else None
    if alive is not None:
        return alive
    if here and held.pid != os.getpid():
        return True
    return None  # elsewhere, or a fit() of this process whose controller is starting


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _refusal(storage: Storage, held: LeaseRecord) -> ExperimentLeased:
    return ExperimentLeased(
        f"The experiment at {storage.uri()} is being run by {held.describe()} (its lease "
        f"{LEASE_FILE} is renewed); stop that run (`rtune stop {storage.uri()}`) before starting "
        "this one."
    )


def _create(storage: Storage, mine: LeaseRecord) -> bool:
    """A new lease. Locally an exclusive create; elsewhere write-then-verify."""
    if storage.is_local:
        # written whole under a private name, then linked: a create that is exclusive and never
        # shows a reader an empty lease (which would read as damaged, so as free to take)
        storage.makedirs()
        target = storage.path(LEASE_FILE)
        draft = f"{target}.new-{mine.token}"
        with open(draft, "wb") as out:
            out.write(encode_json(asdict(mine)))
        try:
            os.link(draft, target)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: an exclusive create, then the write
            return _create_in_place(target, mine)
        finally:
            os.unlink(draft)
        return True
    _write(storage, mine)
    return _verified(storage, mine)


def _create_in_place(target: str, mine: LeaseRecord) -> bool:
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(encode_json(asdict(mine)))
    return True


def _write(storage: Storage, record: LeaseRecord) -> None:
    storage.write_atomic(LEASE_FILE, encode_json(asdict(record)))


def _verified(storage: Storage, mine: LeaseRecord) -> bool:
    time.sleep(VERIFY_PAUSE_S)
    held = read_lease(storage)
    return isinstance(held, LeaseRecord) and held.token == mine.token


def release(storage: Storage, mine: LeaseRecord) -> None:
    """Delete the lease if it is still ours (never another holder's)."""
    try:
        held = read_lease(storage)
        if isinstance(held, LeaseRecord) and held.token == mine.token:
            storage.filesystem.delete_file(storage.path(LEASE_FILE))
    except OSError as exc:  # it expires by itself
        print(f"rtune: WARNING: could not release {lease_path(storage)}: {exc}", file=sys.stderr)


@dataclass
class LeaseKeeper:
    """Renews a held lease from a thread every `ttl_s / 5` seconds, off the per-result path.
    When the file holds another token, `on_lost(why)` is called once and renewal ends."""

    storage: Storage
    record: LeaseRecord
    on_lost: Callable[[str], None] = lambda why: None
    lost: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, controller_started: bool = False) -> LeaseKeeper:
        self.record.controller_started = self.record.controller_started or controller_started
        self.renew()
        self._thread = threading.Thread(target=self._run, name="rtune-lease", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.record.ttl_s / 5) and self.lost is None:
            self.renew()

    def renew(self) -> None:
        try:
            held = read_lease(self.storage)
            if held == DAMAGED:  # not a taker's: a taker writes a whole lease
                held = self.record
            if not isinstance(held, LeaseRecord) or held.token != self.record.token:
                other = held.describe() if held else "nobody (the file is gone)"
                self.lost = (
                    f"the experiment's lease {lease_path(self.storage)} is now held by {other}; "
                    "this run stopped writing to it"
                )
                self.on_lost(self.lost)
                return
            self.record.renewals = max(held.renewals, self.record.renewals) + 1
            self.record.renewed_at = time.time()
            _write(self.storage, self.record)
        except OSError as exc:  # storage trouble: the next renewal tries again
            print(f"rtune: WARNING: could not renew the lease: {exc}", file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def release(self) -> None:
        self.stop()
        if self.lost is None:
            release(self.storage, self.record)
        _HELD_HERE.discard(self.record.token)
