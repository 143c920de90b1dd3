"""Scoring rollouts for a trainer that waits: dynamic batching, the reward transform, the
success grade, the rollout records, the service's counters.

:class:`RewardEngine` owns the loaded adapter. Requests hand it their rollouts; with
batching on, a thread of the model's own encodes them as they arrive into a pool of
rollouts waiting, and each forward pass takes from that pool the oldest rollout and those
nearest its length, up to ``batch_tokens`` padded tokens (:func:`scoring.batching.
pick_batch`), through :func:`scoring.engine.score_traces`. A request is answered as soon
as its last rollout is scored, so its client sends again while the next pass runs and the
pool stays full. An idle model waits for a burst (requests that arrive within
``max_wait_s`` of each other, at most ``BURST_WAITS`` times that). So sixty-four trainer
processes sending one rollout each cost about one batched call over all of them. With
batching off each request gets its own call (the benchmark's baseline).

The model never runs on the event loop. Grading against a ground
truth runs in a pool of processes, whose main thread math-verify's signal timeout needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scoring.batching import pick_batch
from scoring.engine import DEFAULT_BATCH_TOKENS, score_traces
from scoring.metrics import first_error
from scoring.rewards import apply_transform, get_transform, grade_success, transform_label
from scoring.rollout_journal import RolloutJournal
from scoring.types import StepScores, Trace

PROTOCOLS = ("native", "openrlhf", "verl", "trl")
BURST_WAITS = 20  # the longest a group stays open: 20 x max_wait (100 ms by default)


@dataclass(frozen=True)
class RewardSettings:
    """How rollouts become rewards and how requests share the model."""

    transform: str = "min"
    parameters: dict[str, float] = field(default_factory=dict)  # eta, temperature
    success_weight: float = 1.0
    threshold: float = 0.5  # a step below it is the first error step
    step_splitter: str = "paragraphs"
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_padding: float | None = None  # a pass's padding share at most (None: no bound)
    batching: bool = True
    max_wait_s: float = 0.005
    max_batch_items: int = 512
    grade_workers: int = 2
    grade_timeout_s: int = 5
    source: str = "reward-service"

    def check(self) -> None:
        """A ValueError for a transform that cannot run with these parameters, found at
        start-up rather than at the first request."""
        get_transform(self.transform)
        apply_transform(
            self.transform,
            [0.5],
            success=True,
            success_weight=self.success_weight,
            **self.parameters,
        )

    @property
    def label(self) -> str:
        return transform_label(self.transform, get_transform(self.transform).version)

    @property
    def version(self) -> int:
        return get_transform(self.transform).version


@dataclass(frozen=True)
class Rollout:
    """One rollout to score: the problem, its steps, the response text they were split from
    (None when the client sent steps), the ground truth (None: no success term)."""

    problem: str
    steps: tuple[str, ...]
    response: str | None = None
    step_ends: tuple[int, ...] | None = None  # character offset after each step in response
    ground_truth: str | None = None
    training_step: int | None = None
    client_id: str | None = None
    protocol: str = "native"

    def key(self) -> str:
        """The rollout's identity for logging: a retried request gives the same key, so a
        rollout is never logged twice."""
        content = [
            self.protocol,
            self.problem,
            self.response if self.response is not None else list(self.steps),
            self.ground_truth,
            self.training_step,
            self.client_id,
        ]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()


@dataclass(frozen=True)
class Reward:
    """A scored rollout: the PRM's step scores, the transform's step rewards and return,
    the first step scored below the threshold (-1: none; None: no steps), the success."""

    rollout: Rollout
    step_scores: tuple[float, ...]
    step_rewards: tuple[float, ...]
    total: float
    first_error_step: int | None
    success: bool | None
    n_tokens: int

    def as_record(self, settings: RewardSettings) -> dict[str, Any]:
        """The record handed to a rollout log (``annotator.rollouts.log_rollouts``)."""
        r = self.rollout
        return {
            "key": r.key(),
            "problem": r.problem,
            "response": r.response if r.response is not None else "\n\n".join(r.steps),
            "steps": list(r.steps),
            "step_scores": list(self.step_scores),
            "step_rewards": list(self.step_rewards),
            "return": self.total,
            "success": self.success,
            "ground_truth": r.ground_truth,
            "transform": settings.transform,
            "transform_version": settings.version,
            "success_weight": settings.success_weight,
            "training_step": r.training_step,
            "source": settings.source,
            "protocol": r.protocol,
        }


def steps_with_ends(text: str, splitter: Callable[[str], list[str]]) -> tuple[list[str], list[int]]:
    """The steps of ``text`` and the character offset just past each one in ``text``: the
    splitters keep each step a verbatim (stripped) piece of the text, found in order.

    >>> from scoring.steps import split_paragraphs
    >>> steps_with_ends("a\\n\\n b \\n\\nc", split_paragraphs)
    (['a', 'b', 'c'], [1, 5, 9])
    """
    steps = splitter(text)
    ends: list[int] = []
    position = 0
    for step in steps:
        start = text.find(step, position)
        if start < 0:  # a splitter that rewrites its steps: no offsets to give
            return steps, []
        position = start + len(step)
        ends.append(position)
    return steps, ends


class ModelError(RuntimeError):
    """The adapter failed on a request's rollouts (the request gets a 500)."""


class Histogram:
    """A Prometheus histogram: cumulative bucket counts, sum and count."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [
            f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {count}'
            for bound, count in zip(self.buckets, self.counts, strict=True)
        ]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{suffix} {self.total:.6f}")
        out.append(f"{name}_count{suffix} {self.count}")
        return out


class Metrics:
    """The service's counters, in Prometheus' text format (version 0.0.4)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = Histogram((0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_items = Histogram((1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.rollouts = 0
        self.tokens = 0
        self.model_seconds = 0.0
        self.last_tokens_per_second = 0.0
        self.logged = 0
        self.log_errors = 0
        self.log_dropped = 0
        self.replayed = 0
        self.journal_syncs = 0
        self.journal_errors = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
            self.latency.observe(seconds)

    def batch(self, items: int, tokens: int, seconds: float) -> None:
        with self.lock:
            self.batch_items.observe(items)
            self.rollouts += items
            self.tokens += tokens
            self.model_seconds += seconds
            if seconds > 0:
                self.last_tokens_per_second = tokens / seconds

    def text(self) -> str:
        p = "stepwise_reward"
        with self.lock:
            lines = [
                f"# HELP {p}_requests_total Requests answered, by endpoint and status.",
                f"# TYPE {p}_requests_total counter",
            ]
            for (endpoint, status), count in sorted(self.requests.items()):
                lines.append(
                    f'{p}_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                )
            lines += [
                f"# HELP {p}_request_seconds Time from a request's arrival to its answer.",
                f"# TYPE {p}_request_seconds histogram",
                *self.latency.lines(f"{p}_request_seconds"),
                f"# HELP {p}_batch_rollouts Rollouts per call of the model (a batch).",
                f"# TYPE {p}_batch_rollouts histogram",
                *self.batch_items.lines(f"{p}_batch_rollouts"),
                f"# HELP {p}_rollouts_total Rollouts scored.",
                f"# TYPE {p}_rollouts_total counter",
                f"{p}_rollouts_total {self.rollouts}",
                f"# HELP {p}_tokens_total PRM tokens scored.",
                f"# TYPE {p}_tokens_total counter",
                f"{p}_tokens_total {self.tokens}",
                f"# HELP {p}_model_seconds_total Seconds the model spent scoring.",
                f"# TYPE {p}_model_seconds_total counter",
                f"{p}_model_seconds_total {self.model_seconds:.6f}",
                f"# HELP {p}_tokens_per_second PRM tokens per second of the last batch.",
                f"# TYPE {p}_tokens_per_second gauge",
                f"{p}_tokens_per_second {self.last_tokens_per_second:.3f}",
                f"# HELP {p}_rollouts_logged_total Rollout records the log took.",
                f"# TYPE {p}_rollouts_logged_total counter",
                f"{p}_rollouts_logged_total {self.logged}",
                f"# HELP {p}_log_errors_total Failed writes to the rollout log (retried).",
                f"# TYPE {p}_log_errors_total counter",
                f"{p}_log_errors_total {self.log_errors}",
                f"# HELP {p}_rollouts_dropped_total Rollout records the log refused (dropped).",
                f"# TYPE {p}_rollouts_dropped_total counter",
                f"{p}_rollouts_dropped_total {self.log_dropped}",
                f"# HELP {p}_rollouts_replayed_total Records a restart found in the journal.",
                f"# TYPE {p}_rollouts_replayed_total counter",
                f"{p}_rollouts_replayed_total {self.replayed}",
                f"# HELP {p}_journal_syncs_total Appends synced to the journal (group commits).",
                f"# TYPE {p}_journal_syncs_total counter",
                f"{p}_journal_syncs_total {self.journal_syncs}",
                f"# HELP {p}_journal_errors_total Appends the journal failed (answered 500).",
                f"# TYPE {p}_journal_errors_total counter",
                f"{p}_journal_errors_total {self.journal_errors}",
            ]
        return "\n".join(lines) + "\n"


RolloutWriter = Callable[[list[dict[str, Any]]], int]
Settle = Callable[[BaseException | None], None]


class RolloutLog:
    """Hands rollout records to ``write`` in batches from a thread of its own, so an answer
    never waits on the log. A failed write is retried with the same records (the writer is
    idempotent on ``record["key"]``); a record the writer refuses on its own is dropped
    (``stepwise_reward_rollouts_dropped_total``).

    With a ``journal`` (:class:`scoring.rollout_journal.RolloutJournal`) :meth:`commit`
    returns once the records are on disk there, written by a thread of their own with the
    records of every request done meanwhile (one ``fdatasync`` for them all), so a
    rollout whose answer went out survives a kill of the service: a restarted service
    replays the journal into ``write``. Without one, records still queued when the
    process is killed are lost."""

    def __init__(
        self,
        write: RolloutWriter,
        metrics: Metrics,
        journal: RolloutJournal | None = None,
        batch_size: int = 64,
        interval_s: float = 0.5,
    ) -> None:
        self.write = write
        self.metrics = metrics
        self.journal = journal
        self.batch_size = batch_size
        self.interval_s = interval_s
        # (journal segment or None, record) to write; None closes
        self.queue: queue.Queue[tuple[int | None, dict[str, Any]] | None] = queue.Queue()
        # (records, settle: called with None once they are on disk, else the error)
        self.to_journal: queue.Queue[tuple[list[dict[str, Any]], Settle] | None] = queue.Queue()
        if journal is not None:
            replayed = journal.replay()
            with metrics.lock:
                metrics.replayed += len(replayed)
            for item in replayed:
                self.queue.put(item)
            self.journal_thread = threading.Thread(
                target=self._journal, name="rollout-journal", daemon=True
            )
            self.journal_thread.start()
        self.thread = threading.Thread(target=self._run, name="rollout-log", daemon=True)
        self.thread.start()

    async def commit(self, records: list[dict[str, Any]]) -> None:
        """Queue ``records`` for the log; with a journal, once they are on disk there (an
        OSError when they cannot be: their request must not be answered)."""
        if self.journal is None:
            for record in records:
                self.queue.put((None, record))
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        self.to_journal.put((records, lambda error: loop.call_soon_threadsafe(settle, error)))
        await future

    def close(self, timeout_s: float = 10.0) -> None:
        """Journal and write what is queued, then stop."""
        if self.journal is not None:
            self.to_journal.put(None)
            self.journal_thread.join(timeout_s)
        self.queue.put(None)
        self.thread.join(timeout_s)
        if self.journal is not None:
            self.journal.close()

    def _journal(self) -> None:
        """The journal thread: the commits waiting at each turn go in one append (one
        sync), then their requests are let go."""
        assert self.journal is not None
        closing = False
        while not closing:
            waiting = []
            item = self.to_journal.get()
            while True:
                if item is None:
                    closing = True
                else:
                    waiting.append(item)
                try:
                    item = self.to_journal.get_nowait()
                except queue.Empty:
                    break
            records = [record for batch, _ in waiting for record in batch]
            if not records:
                continue
            try:
                segment = self.journal.append(records)
            except OSError as error:
                with self.metrics.lock:
                    self.metrics.journal_errors += 1
                for _, settle in waiting:
                    settle(OSError(f"the rollout journal failed: {error}"))
                continue
            with self.metrics.lock:
                self.metrics.journal_syncs += 1
            for record in records:
                self.queue.put((segment, record))
            for _, settle in waiting:
                settle(None)

    def _run(self) -> None:
        pending: list[tuple[int | None, dict[str, Any]]] = []
        closing = False
        while not closing or pending:
            if not closing:
                deadline = time.monotonic() + self.interval_s
                while len(pending) < self.batch_size:
                    try:
                        item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is None:
                        closing = True
                        break
                    pending.append(item)
            if not pending:
                continue
            if self._write([record for _, record in pending]):
                if self.journal is not None:
                    for segment, count in Counter(s for s, _ in pending).items():
                        self.journal.done(segment, count)
                pending = []
            elif closing:
                return
            else:
                time.sleep(1.0)

    def _write(self, records: list[dict[str, Any]]) -> bool:
        """Write ``records``; True when they are done with. When the batch fails, each
        record is written alone: a record the log refuses (while others go in) is dropped
        and counted, so it cannot block the log; when every one fails the log itself is
        away, and the batch is kept for the next try."""
        try:
            self.write(records)
        except Exception:
            with self.metrics.lock:
                self.metrics.log_errors += 1
        else:
            with self.metrics.lock:
                self.metrics.logged += len(records)
            return True
        if len(records) == 1:
            return False
        refused = []
        for record in records:
            try:
                self.write([record])
            except Exception:
                refused.append(record)
        if len(refused) == len(records):
            return False
        with self.metrics.lock:
            self.metrics.logged += len(records) - len(refused)
            self.metrics.log_dropped += len(refused)
        return True


class RewardEngine:
    """Scores rollouts with one loaded adapter. Call :meth:`start` on the event loop that
    will call :meth:`score`, and :meth:`close` at shutdown. With a ``journal`` (which
    needs a ``log``) every answered rollout reaches the log even if the process dies
    (:class:`RolloutLog`); what a previous process left in it is replayed now."""

    def __init__(
        self,
        adapter: Any,
        settings: RewardSettings,
        log: RolloutWriter | None = None,
        journal: RolloutJournal | None = None,
    ) -> None:
        settings.check()
        if journal is not None and log is None:
            raise ValueError("a rollout journal needs a rollout log to drain into")
        self.adapter = adapter
        self.settings = settings
        self.metrics = Metrics()
        self.log = RolloutLog(log, self.metrics, journal) if log is not None else None
        self._model = ThreadPoolExecutor(1, thread_name_prefix="reward-model")
        self._grader: ProcessPoolExecutor | None = None
        # batching on: (rollouts, settle) of each request for the model thread; None stops it
        self._inbox: queue.SimpleQueue[tuple[list[Rollout], Settled] | None] | None = None
        self._thread: threading.Thread | None = None

    @property
    def model_name(self) -> str:
        return getattr(self.adapter, "model_name", "") or ""

    async def start(self) -> None:
        if self.settings.batching:
            self._inbox = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._batches, name="reward-model", daemon=True)
            self._thread.start()

    async def close(self) -> None:
        if self._inbox is not None and self._thread is not None:
            self._inbox.put(None)
            await asyncio.to_thread(self._thread.join, 30)
        self._model.shutdown(wait=True, cancel_futures=True)
        if self._grader is not None:
            self._grader.shutdown(wait=False, cancel_futures=True)
        if self.log is not None:
            self.log.close()

    async def score(self, rollouts: list[Rollout]) -> list[Reward]:
        """The rewards of one request's rollouts, in order; a :class:`ModelError` when the
        adapter fails on them (other requests batched with them are scored without them)."""
        loop = asyncio.get_running_loop()
        if self._inbox is not None:
            future: asyncio.Future = loop.create_future()
            self._inbox.put(
                (rollouts, lambda result: loop.call_soon_threadsafe(_settle, future, result))
            )
            scores = await future
        else:
            scores = await loop.run_in_executor(self._model, self._score_alone, rollouts)
        successes = await self._grade(rollouts)
        try:
            rewards = [
                self._reward(rollout, result, success)
                for rollout, result, success in zip(rollouts, scores, successes, strict=True)
            ]
        except ValueError as error:  # a score the transform cannot take (outside [0, 1])
            raise ModelError(str(error)) from None
        if self.log is not None:
            await self.log.commit([reward.as_record(self.settings) for reward in rewards])
        return rewards

    def _batches(self) -> None:
        """The model thread with batching on. Each turn it takes the requests that came
        (when idle, a burst: see :meth:`_take`), encodes their rollouts into a pool of
        those waiting, and runs one forward pass picked from the pool by length
        (:func:`scoring.batching.pick_batch`); a request is answered as soon as its last
        rollout is scored. So the rollouts that arrive while a pass runs join the next
        one, and a pass packs similar lengths out of everything waiting rather than
        whatever lengths came together."""
        s = self.settings
        pool: list[tuple[_Waiting, int]] = []  # (request, rollout index), oldest first
        while True:
            arrivals = self._take(idle=not pool)
            if arrivals is None:
                return
            started = time.perf_counter()
            for rollouts, settle in arrivals:
                waiting = self._encode(rollouts, settle)
                if waiting is not None:
                    pool += [(waiting, i) for i in range(len(rollouts))]
            encode_seconds = time.perf_counter() - started
            if not pool:
                continue
            picked = set(
                pick_batch(
                    [waiting.lengths[i] for waiting, i in pool],
                    s.batch_tokens,
                    s.max_padding,
                    s.max_batch_items,
                )
            )
            self._run_pass([item for j, item in enumerate(pool) if j in picked], encode_seconds)
            pool = [item for j, item in enumerate(pool) if j not in picked and not item[0].failed]

    def _take(self, idle: bool) -> list[tuple[list[Rollout], Settled]] | None:
        """The requests in the inbox (None: close). An idle model waits for the first one,
        then takes a burst (trainer processes answered together send again together):
        requests while each comes within ``max_wait_s`` of the one before, for at most
        BURST_WAITS waits, so a lone request waits ``max_wait_s`` only."""
        assert self._inbox is not None
        s = self.settings
        arrivals: list[tuple[list[Rollout], Settled]] = []
        count = 0
        closes = time.monotonic()  # a busy model takes what came, and waits for nothing
        if idle:
            first = self._inbox.get()
            if first is None:
                return None
            arrivals.append(first)
            count = len(first[0])
            closes = time.monotonic() + BURST_WAITS * s.max_wait_s
        while count < s.max_batch_items:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                left = min(s.max_wait_s, closes - time.monotonic())
                if left <= 0:
                    break
                try:
                    item = self._inbox.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                return None
            arrivals.append(item)
            count += len(item[0])
        return arrivals

    def _encode(self, rollouts: list[Rollout], settle: Settled) -> _Waiting | None:
        """A request's rollouts encoded for the pool (a model-free adapter's, and those
        with no steps, at length 0: they add nothing to a pass); None when there is
        nothing to wait for: no rollouts (answered now), or one the adapter cannot encode
        (the request gets a :class:`ModelError`)."""
        if not rollouts:
            settle([])
            return None
        encode = getattr(self.adapter, "encode", None)
        try:
            encodings = [
                encode(_trace(r, i)) if encode is not None and r.steps else None
                for i, r in enumerate(rollouts)
            ]
        except Exception as error:
            settle(ModelError(f"{type(error).__name__}: {error}"))
            return None
        return _Waiting(
            rollouts,
            settle,
            encodings,
            [0 if e is None else len(e.input_ids) for e in encodings],
            [None] * len(rollouts),
            len(rollouts),
        )

    def _run_pass(self, items: list[tuple[_Waiting, int]], extra_seconds: float) -> None:
        """Score ``items`` in one ``score_traces`` call and answer the requests they
        complete. When it fails and the items are of several requests, each request's
        items alone, so one request's bad rollout fails that request only."""
        try:
            results = self._score(
                [waiting.rollouts[i] for waiting, i in items],
                [waiting.encodings[i] for waiting, i in items],
                extra_seconds,
            )
        except Exception as error:
            requests = list({id(waiting): waiting for waiting, _ in items}.values())
            if len(requests) == 1:
                requests[0].failed = True
                requests[0].settle(ModelError(f"{type(error).__name__}: {error}"))
                return
            for request in requests:
                self._run_pass([item for item in items if item[0] is request], 0.0)
            return
        for (waiting, i), result in zip(items, results, strict=True):
            waiting.scores[i] = result
            waiting.left -= 1
            if waiting.left == 0:
                waiting.settle(waiting.scores)

    def _score_alone(self, rollouts: list[Rollout]) -> list[StepScores]:
        """On the model thread, batching off: one request's rollouts in one call."""
        try:
            return self._score(rollouts)
        except Exception as error:
            raise ModelError(f"{type(error).__name__}: {error}") from None

    def _score(
        self,
        rollouts: list[Rollout],
        encodings: list[Any] | None = None,
        extra_seconds: float = 0.0,
    ) -> list[StepScores]:
        """``score_traces`` over ``rollouts`` (their ``encodings`` made before, if given);
        the metrics count ``extra_seconds`` (the encoding) with the call's own."""
        traces = [_trace(r, i) for i, r in enumerate(rollouts)]
        started = time.perf_counter()
        results = list(
            score_traces(
                self.adapter,
                traces,
                self.settings.batch_tokens,
                max_padding=self.settings.max_padding,
                encodings=encodings,
            )
        )
        seconds = time.perf_counter() - started + extra_seconds
        self.metrics.batch(len(results), sum(r.n_tokens for r in results), seconds)
        return results

    async def _grade(self, rollouts: list[Rollout]) -> list[bool | None]:
        needed = [
            i
            for i, r in enumerate(rollouts)
            if r.ground_truth is not None and r.ground_truth.strip()
        ]
        successes: list[bool | None] = [None] * len(rollouts)
        if not needed:
            return successes
        if self._grader is None:
            import multiprocessing

            self._grader = ProcessPoolExecutor(
                self.settings.grade_workers, mp_context=multiprocessing.get_context("spawn")
            )
        loop = asyncio.get_running_loop()
        graded = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._grader,
                    grade_success,
                    _response_text(rollouts[i]),
                    rollouts[i].ground_truth,
                    self.settings.grade_timeout_s,
                )
                for i in needed
            )
        )
        for i, success in zip(needed, graded, strict=True):
            successes[i] = success
        return successes

    def _reward(self, rollout: Rollout, result: StepScores, success: bool | None) -> Reward:
        s = self.settings
        scores = tuple(float(x) for x in result.scores)
        if not scores:  # an empty response: nothing to score, only the success term
            bonus = s.success_weight if success else 0.0
            return Reward(rollout, (), (), bonus, None, success, result.n_tokens)
        if any(math.isnan(x) for x in scores):
            raise ModelError("the scorer gave no verdict (NaN) on a step")
        rewards = apply_transform(
            s.transform, scores, success=success, success_weight=s.success_weight, **s.parameters
        )
        return Reward(
            rollout=rollout,
            step_scores=scores,
            step_rewards=rewards.rewards,
            total=rewards.total,
            first_error_step=first_error(scores, s.threshold),
            success=success,
            n_tokens=result.n_tokens,
        )


Settled = Callable[[Any], None]  # answers a request: its scores, or the exception it gets


@dataclass(eq=False)
class _Waiting:
    """A request whose rollouts wait in the model thread's pool: their encodings and
    lengths, the scores so far, how many are left."""

    rollouts: list[Rollout]
    settle: Settled
    encodings: list[Any]
    lengths: list[int]
    scores: list[StepScores | None]
    left: int
    failed: bool = False


def _settle(future: asyncio.Future, result: Any) -> None:
    """On the event loop: a request's scores or exception (unless its client went away)."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _trace(rollout: Rollout, index: int) -> Trace:
    return Trace(problem=rollout.problem, steps=rollout.steps, id=str(index))


def _response_text(rollout: Rollout) -> str:
    return rollout.response if rollout.response is not None else "\n\n".join(rollout.steps)


class JsonlRolloutWriter:
    """A rollout log in a JSONL file, one record a line, idempotent on ``key``: the keys
    already in the file are read at start (a last line cut short by a kill is dropped), so
    a restarted service never writes a rollout twice."""

    def __init__(self, path: str) -> None:
        import os

        self.path = path
        self.keys: set[str] = set()
        keep = 0
        if os.path.exists(path):
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        self.keys.add(json.loads(line)["key"])
                    except (ValueError, KeyError, TypeError):
                        break
                    keep += len(line)
            with open(path, "r+b") as fh:
                fh.truncate(keep)

    def __call__(self, records: list[dict[str, Any]]) -> int:
        import os

        new = []
        for record in records:
            if record["key"] not in self.keys:
                self.keys.add(record["key"])
                new.append(record)
        if new:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in new))
                fh.flush()
                os.fsync(fh.fileno())
        return len(new)
