"""Compute threads that run jobs step by step, most urgent first.

llama.cpp and the TTS voice are blocking and not re-entrant, and this machine has few cores: by
default a single thread (one *lane*) per model service runs every step. A job is a sequence of
short steps (a prompt chunk or one token for the LLM; a clause for TTS). Before each step the
worker picks the job with the lowest ``priority``: a turn still waiting for its first clause
(``URGENT``) goes first, and urgent and background jobs run in arrival order (the oldest urgent
job finishes first, so its speech synthesis can start while the next one generates); ``NORMAL``
jobs take turns, so the replies of several sessions interleave token by token. Jobs of one
``Batch`` (e.g. sequences of one llama.cpp context) step *together*: the most urgent job leads
and the batch chooses which other runnable jobs join its step. A job may claim a ``resource``
(a model instance): no other job steps on it until the job finishes, on any worker sharing the
same ``ResourceLocks``. Cancelling a job takes effect before its next step.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

URGENT, NORMAL, BACKGROUND = 0, 1, 2


class Job(ABC):
    """A unit of work run by a :class:`StepWorker` in one or more steps."""

    batch: Batch | None = None  # jobs of the same batch may step together

    def __init__(self, priority: int, resource: Hashable | None = None) -> None:
        self.priority = priority
        self.resource = resource
        self.cancelled = False
        self.submitted = 0  # arrival order (set by the worker)
        self.turn = 0  # when it last ran (set by the worker)
        self.resume_at = 0.0  # time.monotonic() before which the job does not step

    @abstractmethod
    def step(self) -> bool:
        """Run one step on the worker thread; True when the job is finished."""

    def cancel(self) -> None:
        """Ask the job to stop; the worker drops it before its next step (thread-safe)."""
        self.cancelled = True

    def finished(self, error: BaseException | None) -> None:  # noqa: B027 - optional hook
        """Called on the worker thread once the job ends, was cancelled, or failed."""


class Batch(ABC):
    """Jobs that can advance together, in one step (one call to the compute they share)."""

    def choose(self, lead: Job, candidates: Sequence[Job]) -> list[Job]:
        """The ``candidates`` (runnable jobs of this batch, most urgent first) that step
        with ``lead``; by default all of them."""
        return list(candidates)

    @abstractmethod
    def step(self, jobs: Sequence[Job]) -> list[bool | BaseException]:
        """One step of every job (``jobs[0]`` leads); per job: whether it finished, or the
        error that ended it."""


class ResourceLocks:
    """Who holds which resource, shared by several workers: a model instance is never used by
    two threads at once, whichever worker its jobs run on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[Hashable, Job] = {}

    def try_hold(self, job: Job) -> bool:
        """Hold ``job.resource`` for ``job`` (or confirm it already does)."""
        if job.resource is None:
            return True
        with self._lock:
            owner = self._owners.setdefault(job.resource, job)
            return owner is job

    def release(self, job: Job) -> None:
        if job.resource is None:
            return
        with self._lock:
            if self._owners.get(job.resource) is job:
                del self._owners[job.resource]


def _urgency(job: Job) -> tuple[int, int]:
    return (job.priority, job.turn if job.priority == NORMAL else job.submitted)


ALL = (URGENT, NORMAL, BACKGROUND)


@dataclass(frozen=True, slots=True)
class Lane:
    """One worker thread: the priorities it runs and its OS niceness. Lanes of different
    niceness let urgent steps take the CPU from less urgent ones in *other* processes too
    (the speech thread of a later clause yields to the model thread of a new turn)."""

    priorities: tuple[int, ...] = ALL
    nice: int = 0


def split_lanes(split: bool, normal_nice: int = 5) -> tuple[Lane, ...]:
    """Either one lane for replies (urgent first), or an urgent lane at normal OS priority plus
    a lane for the rest at ``normal_nice``."""
    if not split:
        return (Lane(),)
    return (Lane((URGENT,)), Lane((NORMAL, BACKGROUND), nice=normal_nice))


class StepWorker:
    """The scheduler and its threads (one per lane). ``submit`` jobs from any thread."""

    def __init__(self, name: str, locks: ResourceLocks | None = None,
                 lanes: tuple[Lane, ...] = (Lane(),)) -> None:
        self._jobs: list[Job] = []
        self._running: set[Job] = set()
        self._locks = locks or ResourceLocks()
        self._cond = threading.Condition()
        self._clock = itertools.count(1)
        self._stopped = False
        self._threads = [threading.Thread(target=self._run, args=(lane,), name=f"{name}-{i}",
                                          daemon=True) for i, lane in enumerate(lanes)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            job.submitted = job.turn = next(self._clock)
            self._jobs.append(job)
            self._cond.notify_all()

    def wake(self) -> None:
        """Re-evaluate (after a cancel, so a cancelled job is dropped promptly)."""
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Cancel every job and wait up to ``timeout_s`` for the threads to end (a step in
        progress is never interrupted). True once they all ended: only then may what the
        steps use (a model context) be freed."""
        with self._cond:
            self._stopped = True
            for job in self._jobs:
                job.cancel()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self, lane: Lane) -> None:
        if lane.nice:
            _lower_thread_priority(lane.nice)
        while True:
            with self._cond:
                jobs = self._pick(lane)
                while not jobs and not self._stopped:
                    # Eligible jobs may wait for a resource another worker holds, or rest
                    # until their resume_at: look again then; otherwise sleep until a
                    # submit, a finished step or a wake.
                    self._cond.wait(timeout=self._recheck_in(lane))
                    jobs = self._pick(lane)
                if not jobs:
                    return
                for job in jobs:
                    job.turn = next(self._clock)
                    self._running.add(job)
            self._run_step(jobs)

    def _recheck_in(self, lane: Lane) -> float | None:
        """Seconds until an eligible, not running job may be runnable (lock held)."""
        eligible = [j for j in self._jobs if j.priority in lane.priorities
                    and j not in self._running]
        if not eligible:
            return None
        rest = min(j.resume_at for j in eligible) - time.monotonic()
        return max(0.001, min(0.005, rest)) if rest > 0 else 0.005

    def _pick(self, lane: Lane) -> list[Job]:
        """Drop cancelled jobs; the lane's most urgent runnable job and the jobs of its batch
        that step with it (lock held)."""
        for job in [j for j in self._jobs if j.cancelled and j not in self._running]:
            self._end(job, None)
        ordered = sorted(self._jobs, key=_urgency)
        now = time.monotonic()
        runnable = [j for j in ordered if j.priority in lane.priorities
                    and j not in self._running and j.resume_at <= now]
        for lead in runnable:
            if self._locks.try_hold(lead):
                return [lead, *self._companions(lead, runnable)]
        return []

    def _companions(self, lead: Job, runnable: list[Job]) -> list[Job]:
        if lead.batch is None:
            return []
        candidates = [j for j in runnable if j is not lead and j.batch is lead.batch]
        try:
            chosen = lead.batch.choose(lead, candidates)
        except Exception:  # the lead steps alone; a job that cannot step fails in its own step
            log.exception("choosing the jobs of a batch step failed")
            return []
        return [j for j in chosen if self._locks.try_hold(j)]

    def _run_step(self, jobs: list[Job]) -> None:
        outcomes: list[bool | BaseException]
        try:
            if len(jobs) == 1 and jobs[0].batch is None:
                outcomes = [jobs[0].step()]
            else:
                batch = jobs[0].batch
                assert batch is not None
                outcomes = batch.step(jobs)
        except Exception as exc:  # handed to the jobs' owners, never lost
            log.debug("step failed: %s", exc)
            outcomes = [exc] * len(jobs)
        with self._cond:
            for job, outcome in zip(jobs, outcomes, strict=True):
                self._running.discard(job)
                if isinstance(outcome, BaseException):
                    self._end(job, outcome)
                elif outcome:
                    self._end(job, None)
            self._cond.notify_all()

    def _end(self, job: Job, error: BaseException | None) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        self._locks.release(job)
        try:
            job.finished(error)
        except Exception:  # a broken callback must not kill the worker
            log.exception("job completion callback failed")


def _lower_thread_priority(nice: int) -> None:
    """Make the calling thread yield the CPU to everything else (Linux: per-thread nice)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError, PermissionError):
        log.debug("cannot lower the priority of the background worker")
