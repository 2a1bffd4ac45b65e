"""The dynamic batcher, driven by real threads and a real (small) numpy model."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from keel.errors import (
    DeadlineExceeded,
    NonFiniteOutput,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RuntimeFailure,
)
from keel.serving import run_estimate
from keel.serving.arrivals import Arrivals
from keel.serving.batcher import Batcher, Tensors
from keel.serving.run_estimate import RunTimeEstimate
from keel.settings import BatchingSettings

WEIGHTS = np.random.default_rng(0).normal(size=(4, 3))
HOLD = -1.0
"""A row whose first feature is HOLD makes the model wait for its gate (a busy model)."""
SPIN = -2.0
"""A row whose first feature is SPIN makes the model compute for ``spin_s`` (a slow input)."""


class LinearModel:
    """A fixed linear layer ``x @ W`` that records its batches and can be held, slowed or broken."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.delay_s = 0.0
        self.spin_s = 0.05
        self.threads: list[str] = []
        self.fail_next: Exception | None = None
        self.batches: list[npt.NDArray[Any]] = []
        self._lock = threading.Lock()

    def __call__(self, inputs: Tensors) -> Tensors:
        x = inputs["x"]
        with self._lock:
            self.batches.append(x.copy())
            self.threads.append(threading.current_thread().name)
            failure, self.fail_next = self.fail_next, None
        if failure is not None:
            raise failure
        if (x[:, 0] == SPIN).any():
            # CPU time, not a sleep: the batcher's bound on inline runs counts CPU time.
            until_cpu = time.thread_time() + self.spin_s
            while time.thread_time() < until_cpu:
                pass
        if (x[:, 0] == HOLD).any():
            self.gate.wait(timeout=10)  # bounded, so a failing test cannot hang the suite
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"y": x @ WEIGHTS}

    @property
    def batch_sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]

    def saw(self, row: npt.NDArray[Any]) -> bool:
        return any((batch == row).all(axis=1).any() for batch in self.batches)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-batcher")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def model(executor: ThreadPoolExecutor) -> Iterator[LinearModel]:
    # Depends on the executor so that its gate opens before the pool waits for its threads.
    linear = LinearModel()
    yield linear
    linear.gate.set()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def batcher_for(model: LinearModel, executor: ThreadPoolExecutor, **settings: Any) -> Batcher:
    return Batcher(model, BatchingSettings(**settings), executor, name="test")


def inline_batcher(
    model: LinearModel, executor: ThreadPoolExecutor, arrivals: Arrivals | None = None
) -> Batcher:
    """A batcher that calls the model on the loop, as the server does for a fast one."""
    return Batcher(
        model, BatchingSettings(), executor, name="inline", inline=True, arrivals=arrivals
    )


def rows(count: int, seed: int = 1) -> npt.NDArray[Any]:
    return np.random.default_rng(seed).uniform(size=(count, 4))


def held_row() -> npt.NDArray[Any]:
    row = rows(1, seed=99)
    row[0, 0] = HOLD
    return row


def spinning_row() -> npt.NDArray[Any]:
    row = rows(1, seed=98)
    row[0, 0] = SPIN
    return row


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def hold_model(batcher: Batcher) -> asyncio.Task[Tensors]:
    """Start a batch that stays in flight until the model's gate opens."""
    blocker = asyncio.create_task(batcher.submit({"x": held_row()}))
    await until(lambda: batcher.in_flight == 1)
    return blocker


def test_concurrent_callers_are_batched_and_each_gets_its_own_rows(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    model.delay_s = 0.02
    inputs = [rows(1, seed=i) for i in range(50)]

    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_batch_size=16, max_queue_delay_ms=5)
        results = await asyncio.gather(*(batcher.submit({"x": x}) for x in inputs))
        for x, result in zip(inputs, results, strict=True):
            np.testing.assert_allclose(result["y"], (x @ WEIGHTS), rtol=1e-12)
            assert result["y"].shape == (1, 3)
        assert batcher.rows_run == 50
        assert batcher.batches_run == len(model.batches)

    run(scenario)
    assert max(model.batch_sizes) > 1
    assert max(model.batch_sizes) <= 16
    assert sum(model.batch_sizes) == 50


def test_lone_request_on_idle_model_does_not_wait_for_company(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_queue_delay_ms=500)
        loop = asyncio.get_running_loop()
        for seed in range(3):
            started = loop.time()
            result = await batcher.submit({"x": rows(2, seed)})
            assert loop.time() - started < 0.25  # far below the 500 ms it must not wait
            np.testing.assert_allclose(result["y"], rows(2, seed) @ WEIGHTS)

    run(scenario)
    assert model.batch_sizes == [2, 2, 2]


def test_busy_model_waits_briefly_for_company(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_queue_delay_ms=300, max_batches_in_flight=2)
        blocker = await hold_model(batcher)
        first = asyncio.create_task(batcher.submit({"x": rows(1, seed=1)}))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(batcher.submit({"x": rows(1, seed=2)}))
        await asyncio.gather(first, second)
        assert not blocker.done()  # dispatched into the free slot, not after the held batch
        model.gate.set()
        await blocker

    run(scenario)
    assert model.batch_sizes == [1, 2]


def test_request_larger_than_max_batch_size_is_split_and_reassembled_in_order(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    x = rows(30)

    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_batch_size=8)
        result = await batcher.submit({"x": x})
        np.testing.assert_allclose(result["y"], x @ WEIGHTS, rtol=1e-12)
        assert batcher.queued_rows == 0

    run(scenario)
    assert sorted(model.batch_sizes) == [6, 8, 8, 8]


def test_full_queue_sheds_at_once_counts_and_keeps_serving(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(
            model, executor, max_batch_size=4, max_queue_size=8, max_batches_in_flight=1
        )
        blocker = await hold_model(batcher)
        queued = [asyncio.create_task(batcher.submit({"x": rows(4, seed)})) for seed in (1, 2)]
        await until(lambda: batcher.queued_rows == 8)

        with pytest.raises(Overloaded) as shed:
            await batcher.submit({"x": rows(1)})
        assert shed.value.retry_after_s >= 1
        with pytest.raises(PayloadTooLarge, match="at most 8 can be queued"):
            await batcher.submit({"x": rows(9)})
        assert batcher.requests_shed == 1
        assert batcher.queued_rows == 8

        model.gate.set()
        await asyncio.gather(blocker, *queued)
        result = await batcher.submit({"x": rows(1, seed=5)})
        np.testing.assert_allclose(result["y"], rows(1, seed=5) @ WEIGHTS)

    run(scenario)


def test_deadline_passing_while_queued_withdraws_only_that_request(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    late, patient = rows(1, seed=7), rows(1, seed=8)

    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_batches_in_flight=1)
        loop = asyncio.get_running_loop()
        blocker = await hold_model(batcher)
        doomed = asyncio.create_task(batcher.submit({"x": late}, deadline=loop.time() + 0.1))
        waiting = asyncio.create_task(batcher.submit({"x": patient}))
        with pytest.raises(DeadlineExceeded):
            await doomed
        assert batcher.queued_rows == 1
        model.gate.set()
        result = await waiting
        np.testing.assert_allclose(result["y"], patient @ WEIGHTS)
        await blocker

    run(scenario)
    assert not model.saw(late[0])


def test_deadline_passing_while_running_answers_at_the_deadline(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(model, executor)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Both join the first batch, which the held row keeps running.
        doomed = asyncio.create_task(batcher.submit({"x": rows(1)}, deadline=started + 0.2))
        companion = asyncio.create_task(batcher.submit({"x": held_row()}))
        with pytest.raises(DeadlineExceeded):
            await doomed
        assert 0.15 <= loop.time() - started < 3
        assert not companion.done()
        assert batcher.in_flight == 1
        model.gate.set()
        result = await companion
        np.testing.assert_allclose(result["y"], held_row() @ WEIGHTS)

    run(scenario)
    assert model.batch_sizes == [2]


def test_deadline_already_passed_is_refused_without_running(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(model, executor)
        past = asyncio.get_running_loop().time() - 1
        with pytest.raises(DeadlineExceeded):
            await batcher.submit({"x": rows(1)}, deadline=past)

    run(scenario)
    assert model.batches == []


def test_a_model_error_reaches_the_request_that_caused_it_and_no_batch_mate(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    def refusing_negative_ids(inputs: Tensors) -> Tensors:
        if (inputs["x"][:, 0] < 0).any():
            raise ValueError("id out of range")
        return model(inputs)

    batches = [{"x": rows(1, seed) * (-1 if seed == 2 else 1)} for seed in range(5)]

    async def scenario() -> None:
        batcher = Batcher(refusing_negative_ids, BatchingSettings(), executor, name="test")
        model.fail_next = ValueError("weights are corrupt")
        with pytest.raises(RuntimeFailure, match="weights are corrupt") as failed:
            await batcher.submit({"x": rows(1)})
        assert isinstance(failed.value.__cause__, ValueError)
        outcomes = await asyncio.gather(
            *(batcher.submit(inputs) for inputs in batches), return_exceptions=True
        )
        for seed, outcome in enumerate(outcomes):
            if seed == 2:
                assert isinstance(outcome, RuntimeFailure)
                assert "id out of range" in str(outcome)
                assert isinstance(outcome.__cause__, ValueError)
            else:
                assert not isinstance(outcome, BaseException)
                np.testing.assert_allclose(outcome["y"], rows(1, seed) @ WEIGHTS)
        assert batcher.batches_failed == 2
        result = await batcher.submit({"x": rows(1)})
        np.testing.assert_allclose(result["y"], rows(1) @ WEIGHTS)

    run(scenario)
    # The batch of five failed and was run again in halves; the bad request ran alone.
    assert model.batch_sizes == [1, 2, 2, 1]


def test_a_non_finite_output_fails_only_the_caller_whose_rows_hold_it(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    def nan_for_large_rows(inputs: Tensors) -> Tensors:
        y = model(inputs)["y"]
        y[inputs["x"][:, 0] > 1] = np.nan
        return {"y": y, "id": np.arange(len(y))}

    batches = [{"x": rows(2, seed) + (1 if seed == 2 else 0)} for seed in range(5)]

    async def scenario() -> None:
        batcher = Batcher(nan_for_large_rows, BatchingSettings(), executor, name="m@production")
        blocker = await hold_model(batcher)
        waiting = [asyncio.ensure_future(batcher.submit(inputs)) for inputs in batches]
        await until(lambda: batcher.queued_rows == 10)
        model.gate.set()
        await blocker
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        for seed, outcome in enumerate(outcomes):
            if seed == 2:
                assert isinstance(outcome, NonFiniteOutput)
                assert "m@production returned NaN or infinity in output 'y'" in str(outcome)
            else:
                assert not isinstance(outcome, BaseException)
                np.testing.assert_allclose(outcome["y"], rows(2, seed) @ WEIGHTS)
        assert batcher.batches_failed == 1

    run(scenario)
    # Judged on the answers, never by running the batch again.
    assert model.batch_sizes == [1, 10]


def test_outputs_that_cannot_be_split_fail_every_caller(executor: ThreadPoolExecutor) -> None:
    def summing(inputs: Tensors) -> Tensors:
        return {"total": inputs["x"].sum(axis=0)}

    async def scenario() -> None:
        batcher = Batcher(summing, BatchingSettings(), executor)
        outcomes = await asyncio.gather(
            *(batcher.submit({"x": rows(3, seed)}) for seed in range(2)), return_exceptions=True
        )
        assert all(isinstance(outcome, RuntimeFailure) for outcome in outcomes)
        assert "cannot be split" in str(outcomes[0])

    run(scenario)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "at least one input"),
        ({"x": np.zeros((0, 4))}, "at least one row"),
        ({"x": np.zeros((2, 4)), "z": np.zeros((3, 1))}, "disagree on the number of rows"),
        ({"x": np.float64(1.0)}, "first dimension"),
    ],
)
def test_malformed_request_is_refused(
    model: LinearModel, executor: ThreadPoolExecutor, inputs: Tensors, message: str
) -> None:
    async def scenario() -> None:
        with pytest.raises(RuntimeFailure, match=message):
            await batcher_for(model, executor).submit(inputs)

    run(scenario)
    assert model.batches == []


def test_requests_of_different_shapes_go_to_different_batches(executor: ThreadPoolExecutor) -> None:
    seen: list[tuple[int, ...]] = []

    def doubling(inputs: Tensors) -> Tensors:
        seen.append(inputs["x"].shape)
        return {"y": inputs["x"] * 2}

    async def scenario() -> None:
        batcher = Batcher(doubling, BatchingSettings(), executor)
        narrow, wide = np.ones((2, 3)), np.ones((1, 5))
        results = await asyncio.gather(
            batcher.submit({"x": narrow}),
            batcher.submit({"x": wide}),
            batcher.submit({"x": narrow}),
        )
        assert [r["y"].shape for r in results] == [(2, 3), (1, 5), (2, 3)]

    run(scenario)
    assert sorted(seen) == [(1, 5), (2, 3), (2, 3)]


def test_cancelled_callers_leave_the_others_alone(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    first, leaving, last = rows(1, seed=1), rows(1, seed=2), rows(1, seed=3)

    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_batches_in_flight=1)
        blocker = await hold_model(batcher)
        tasks = [asyncio.create_task(batcher.submit({"x": x})) for x in (first, leaving, last)]
        await until(lambda: batcher.queued_rows == 3)
        tasks[1].cancel()
        await asyncio.wait([tasks[1]], timeout=5)
        assert batcher.queued_rows == 2
        model.gate.set()
        await blocker
        for task, x in ((tasks[0], first), (tasks[2], last)):
            np.testing.assert_allclose((await task)["y"], x @ WEIGHTS)
        assert tasks[1].cancelled()

        # A caller cancelled while its batch runs: its rows are dropped, its batch-mate is served.
        model.gate.clear()
        leaving_late = asyncio.create_task(batcher.submit({"x": rows(1, seed=4)}))
        staying = asyncio.create_task(batcher.submit({"x": held_row()}))
        await until(lambda: batcher.in_flight == 1)
        leaving_late.cancel()
        await asyncio.wait([leaving_late], timeout=5)
        model.gate.set()
        np.testing.assert_allclose((await staying)["y"], held_row() @ WEIGHTS)
        assert leaving_late.cancelled()

    run(scenario)
    assert not model.saw(leaving[0])
    assert model.batch_sizes[-1] == 2


def test_close_drains_queued_requests_then_refuses_new_ones(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    model.delay_s = 0.01
    inputs = [rows(1, seed) for seed in range(20)]

    async def scenario() -> None:
        batcher = batcher_for(
            model, executor, max_batch_size=4, max_batches_in_flight=1, max_queue_delay_ms=50
        )
        tasks = [asyncio.create_task(batcher.submit({"x": x})) for x in inputs]
        await until(lambda: batcher.in_flight == 1)
        await batcher.close(timeout=5)
        for task, x in zip(tasks, inputs, strict=True):
            assert task.done()
            np.testing.assert_allclose(task.result()["y"], x @ WEIGHTS)
        with pytest.raises(NotReady, match="shutting down"):
            await batcher.submit({"x": rows(1)})
        assert asyncio.all_tasks() == {asyncio.current_task()}  # the dispatcher is gone

    run(scenario)
    assert sum(model.batch_sizes) == 20


def test_close_returns_within_its_timeout_when_the_model_hangs(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_batches_in_flight=1)
        loop = asyncio.get_running_loop()
        stuck = await hold_model(batcher)
        queued = asyncio.create_task(batcher.submit({"x": rows(1)}))
        await until(lambda: batcher.queued_rows == 1)
        started = loop.time()
        await batcher.close(timeout=0.2)
        assert loop.time() - started < 2
        for task in (stuck, queued):
            with pytest.raises(NotReady):
                await task
        assert asyncio.all_tasks() == {asyncio.current_task()}
        model.gate.set()

    run(scenario)
    assert model.batch_sizes == [1]


def test_an_inline_batcher_merges_same_tick_requests_and_answers_each(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = inline_batcher(model, executor)
        data = rows(16)
        results = await asyncio.gather(*(batcher.submit({"x": data[i : i + 1]}) for i in range(16)))
        for i, result in enumerate(results):
            np.testing.assert_allclose(result["y"], data[i : i + 1] @ WEIGHTS)
        assert max(model.batch_sizes) > 1
        await batcher.close(timeout=5)

    run(scenario)


def test_an_inline_batcher_gives_a_model_error_to_its_callers_and_goes_on(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = inline_batcher(model, executor)
        model.fail_next = ValueError("broken weights")
        with pytest.raises(RuntimeFailure, match="broken weights"):
            await batcher.submit({"x": rows(1)})
        result = await batcher.submit({"x": rows(2)})
        np.testing.assert_allclose(result["y"], rows(2) @ WEIGHTS)
        await batcher.close(timeout=5)

    run(scenario)


def test_an_inline_batcher_that_breaks_fails_its_callers_and_refuses_new_ones(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = inline_batcher(model, executor)

        def broken_observer(rows: int, waits: list[float], seconds: float) -> None:
            raise ZeroDivisionError("bug in the metrics")

        batcher.observer = broken_observer
        results = await asyncio.gather(
            *(batcher.submit({"x": rows(1)}) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeFailure) for r in results)
        assert all("bug in the metrics" in str(r) for r in results)
        with pytest.raises(NotReady, match="stopped after an internal error"):
            await batcher.submit({"x": rows(1)})
        await batcher.close(timeout=5)

    run(scenario)


def test_an_inline_batcher_with_no_request_on_its_way_answers_in_the_callers_own_step(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        arrivals = Arrivals()
        batcher = inline_batcher(model, executor, arrivals)
        data = rows(1)
        # Driven by hand: a coroutine that never suspends ends at its first send().
        call = batcher.submit({"x": data}, deadline=asyncio.get_running_loop().time() + 5)
        with pytest.raises(StopIteration) as answered:
            call.send(None)
        np.testing.assert_allclose(answered.value.value["y"], data @ WEIGHTS)
        await batcher.close(timeout=5)

    run(scenario)


def test_an_inline_batcher_waits_for_requests_read_but_not_started_and_batches_them(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        arrivals = Arrivals()
        batcher = inline_batcher(model, executor, arrivals)
        data = rows(3)
        order: list[int] = []

        async def answer(i: int) -> Tensors:
            # As the HTTP server's answering task does: counted out as it starts.
            arrivals.unstarted -= 1
            order.append(i)
            return await batcher.submit({"x": data[i : i + 1]})

        # Three requests read in one pass: each task is counted in as it is created.
        tasks = []
        for i in range(3):
            arrivals.unstarted += 1
            tasks.append(asyncio.create_task(answer(i)))
        results = await asyncio.gather(*tasks)
        assert order == [0, 1, 2]
        assert model.batch_sizes == [3]
        for i, result in enumerate(results):
            np.testing.assert_allclose(result["y"], data[i : i + 1] @ WEIGHTS)
        assert arrivals.unstarted == 0
        await batcher.close(timeout=5)

    run(scenario)


def test_a_deadline_sooner_than_one_model_run_is_refused_at_once_without_running(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    model.delay_s = 0.05

    async def scenario() -> None:
        batcher = batcher_for(model, executor)
        await batcher.submit({"x": rows(1)})
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded, match="sooner than one model run takes"):
            await batcher.submit({"x": rows(1, seed=2)}, deadline=loop.time() + 0.01)
        assert loop.time() - started < 0.01
        assert len(model.batches) == 1
        # A deadline the model can meet still runs.
        await batcher.submit({"x": rows(1, seed=3)}, deadline=loop.time() + 5)
        assert len(model.batches) == 2
        await batcher.close(timeout=5)

    run(scenario)


def test_an_inline_run_over_its_bound_moves_the_model_to_threads_for_good(
    model: LinearModel, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    model.spin_s = 0.05  # 25x the 2 ms bound of the default inline_below_us (500 us)
    later = [rows(1, seed=seed) for seed in (3, 4)]

    async def scenario() -> None:
        settings = BatchingSettings(max_batch_size=1)
        batcher = Batcher(model, settings, executor, name="inline", inline=True)
        assert batcher.inline_bound_s == pytest.approx(0.002)
        await batcher.submit({"x": rows(1)})
        assert batcher.inline
        # The slow row, and two requests queued behind it in the same tick: one batch each.
        results = await asyncio.gather(
            batcher.submit({"x": spinning_row()}), *(batcher.submit({"x": x}) for x in later)
        )
        for result, x in zip(results, [spinning_row(), *later], strict=True):
            np.testing.assert_allclose(result["y"], x @ WEIGHTS)
        assert not batcher.inline
        assert batcher.inline_demotions == 1
        # From now on in a thread, slow rows included, and never moved again.
        await batcher.submit({"x": spinning_row()})
        assert batcher.inline_demotions == 1
        await batcher.close(timeout=5)

    with caplog.at_level(logging.WARNING, logger="keel.serving"):
        run(scenario)
    main = threading.main_thread().name
    assert model.threads[:2] == [main, main]
    assert len(model.threads) == 5
    assert all(name.startswith("test-batcher") for name in model.threads[2:])
    warnings = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
    assert len(warnings) == 1
    assert "model inline now runs on worker threads" in warnings[0]
    assert "over its bound of 2.0 ms" in warnings[0]


def test_an_inline_run_slowed_by_waiting_not_computing_stays_on_the_loop(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    # A sleep stands for the OS taking the loop's thread away (a busy box, a CPU quota):
    # no fault of the model, so no move.
    model.delay_s = 0.02

    async def scenario() -> None:
        batcher = inline_batcher(model, executor)
        await batcher.submit({"x": rows(1)})
        assert batcher.inline
        assert batcher.inline_demotions == 0
        await batcher.close(timeout=5)

    run(scenario)


def test_an_inline_answer_that_comes_after_the_deadline_is_a_504(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    model.delay_s = 0.05

    async def scenario() -> None:
        batcher = inline_batcher(model, executor)
        loop = asyncio.get_running_loop()
        # The first run: nothing measured yet, so nothing refuses it up front.
        with pytest.raises(DeadlineExceeded, match="deadline passed"):
            await batcher.submit({"x": rows(1)}, deadline=loop.time() + 0.01)
        await batcher.close(timeout=5)

    run(scenario)
    assert model.batch_sizes == [1]


def test_a_long_request_in_chunks_gets_504_at_its_deadline_while_a_chunk_runs(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(model, executor, max_batch_size=2)
        loop = asyncio.get_running_loop()
        data = rows(5)
        data[2, 0] = HOLD  # the second chunk runs until the gate opens
        started = loop.time()
        with pytest.raises(DeadlineExceeded):
            await batcher.submit({"x": data}, deadline=started + 0.2)
        assert 0.15 <= loop.time() - started < 1
        model.gate.set()
        await until(lambda: batcher.in_flight == 0)
        await batcher.close(timeout=5)

    run(scenario)


def test_one_slow_run_among_fast_ones_never_refuses_a_deadline() -> None:
    estimate = RunTimeEstimate()
    for at, seconds in enumerate((0.01, 0.01, 9.0, 0.01)):
        estimate.record(seconds, at / 1000)
        assert estimate.expected(at / 1000) <= 0.01


def test_slow_runs_stop_refusing_within_seconds_and_a_fast_run_does_not_bring_them_back() -> None:
    half_life = run_estimate.RUN_ESTIMATE_HALF_LIFE_S
    estimate = RunTimeEstimate()
    estimate.record(0.01, 0.0)
    estimate.record(9.0, 9.0)
    estimate.record(9.0, 9.5)
    assert estimate.expected(9.5) > 1.0
    # 9 s, halved every half-life: under 1 s after log2(9) half-lives, whatever is refused.
    after = 9.5 + 3.2 * half_life
    assert estimate.expected(after) < 1.0
    estimate.record(0.01, after)
    assert estimate.expected(after) < 1.0


def test_a_refused_deadline_is_served_once_the_slow_runs_fade(
    model: LinearModel, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_estimate, "RUN_ESTIMATE_HALF_LIFE_S", 0.05)
    model.delay_s = 0.2

    async def scenario() -> None:
        batcher = batcher_for(model, executor)
        loop = asyncio.get_running_loop()
        await batcher.submit({"x": rows(1)})
        with pytest.raises(DeadlineExceeded, match="sooner than one model run takes"):
            await batcher.submit({"x": rows(1)}, deadline=loop.time() + 0.1)
        model.delay_s = 0.0
        # 200 ms, halved every 50 ms: under 100 ms after 50 ms; refused requests never ran.
        await asyncio.sleep(0.1)
        await batcher.submit({"x": rows(1, seed=2)}, deadline=loop.time() + 0.1)
        await batcher.close(timeout=5)

    run(scenario)
    assert len(model.batches) == 2


def test_a_batcher_without_an_executor_runs_on_threads_of_its_own(model: LinearModel) -> None:
    async def scenario() -> None:
        one_row = BatchingSettings(max_batch_size=1, max_batches_in_flight=2)
        slow = Batcher(model, one_row, name="slow")
        other = LinearModel()
        fast = Batcher(other, BatchingSettings(max_batches_in_flight=2), name="fast")
        # Every thread the slow version may have is busy...
        held = [asyncio.create_task(slow.submit({"x": held_row()})) for _ in range(2)]
        await until(lambda: slow.in_flight == 2)
        # ...and another version is served all the same, on threads of its own.
        async with asyncio.timeout(2):
            result = await fast.submit({"x": rows(1)})
        np.testing.assert_allclose(result["y"], rows(1) @ WEIGHTS)
        model.gate.set()
        await asyncio.gather(*held)
        await asyncio.gather(slow.close(timeout=5), fast.close(timeout=5))
        assert other.threads == ["keel-run fast_0"]
        assert set(model.threads) <= {"keel-run slow_0", "keel-run slow_1"}

    run(scenario)


def test_a_garbage_collection_during_an_inline_run_does_not_move_the_model(
    model: LinearModel, executor: ThreadPoolExecutor
) -> None:
    # A full collection of a large heap takes tens of milliseconds and may land inside
    # any run on the loop's thread: no fault of the model, so no move to the threads.
    garbage = [[[] for _ in range(50)] for _ in range(20_000)]
    for inner in garbage:
        inner.append(inner)  # cycles: only the collector frees them

    def collecting_model(inputs: Tensors) -> Tensors:
        started = time.thread_time()
        gc.collect()
        assert time.thread_time() - started > 0.002, "the collection must exceed the bound"
        return model(inputs)

    async def scenario() -> None:
        batcher = Batcher(
            collecting_model, BatchingSettings(max_batch_size=1), executor, name="gc", inline=True
        )
        assert batcher.inline_bound_s == pytest.approx(0.002)
        await batcher.submit({"x": rows(1)})
        assert batcher.inline
        assert batcher.inline_demotions == 0
        await batcher.close(timeout=5)

    run(scenario)
