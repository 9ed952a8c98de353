"""The steps-per-second cap: evenly spaced starts, no catch-up bursts, shared by applies."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from fileops_daemon.core.pacing import StepPacer
from tests.conftest import World
from tests.support import apply_doc, notes_ops, plan_doc, snapshot, twin_tree


class FakeTime:
    """A clock that only moves when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def paced(per_second: float) -> tuple[StepPacer, FakeTime]:
    fake = FakeTime()
    return StepPacer(per_second, clock=fake.clock, sleep=fake.sleep), fake


def test_steps_start_evenly_spaced() -> None:
    pacer, fake = paced(4)
    starts = []
    for _ in range(5):
        pacer.wait()
        starts.append(fake.now)
    assert starts == [100.0, 100.25, 100.5, 100.75, 101.0]


def test_falling_behind_earns_no_burst() -> None:
    pacer, fake = paced(10)
    pacer.wait()
    fake.now += 5.0  # a slow step: 50 slots went by unused
    pacer.wait()
    assert fake.sleeps == []  # the late step starts at once...
    pacer.wait()
    assert fake.sleeps == [pytest.approx(0.1)]  # ...and the one after it waits its turn


def test_no_cap_never_sleeps() -> None:
    pacer, fake = paced(0)
    for _ in range(1000):
        pacer.wait()
    assert fake.sleeps == []


@pytest.mark.parametrize("rate", [-1.0, math.nan, 1e-320, 0.001])
def test_a_negative_nan_or_vanishing_rate_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="steps per second"):
        StepPacer(rate)


def test_a_pause_cuts_the_wait_short() -> None:
    pacer = StepPacer(0.01)  # one step every 100 s
    pause = threading.Event()
    pacer.wait(pause)  # the first slot is now
    threading.Timer(0.05, pause.set).start()
    began = time.monotonic()
    pacer.wait(pause)
    assert time.monotonic() - began < 30, "the wait sat out its slot despite the pause"
    assert pause.is_set()


def test_threads_sharing_a_pacer_share_its_rate() -> None:
    pacer = StepPacer(200)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            pacer.wait()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The 40th slot is 39 intervals of 5 ms after the first, whatever the threads did.
    assert len(starts) == 40
    assert max(starts) - began >= 39 / 200 - 0.002


@pytest.mark.parametrize("parallelism", [1, 8])
def test_a_paced_apply_takes_its_time_and_ends_like_an_unpaced_one(
    world: World, tmp_path: Path, parallelism: int
) -> None:
    twin = twin_tree(world.root, tmp_path)
    ops = notes_ops(29)
    began = time.monotonic()
    result = apply_doc(
        plan_doc(ops), world.root, world.state, parallelism=parallelism, pacer=StepPacer(100)
    )
    took = time.monotonic() - began
    assert result["status"] == "applied"
    assert took >= 29 / 100 - 0.002, f"30 steps at 100/s took only {took:.3f}s"
    unpaced = apply_doc(plan_doc(ops), twin, tmp_path / "state2", parallelism=parallelism)
    assert unpaced["status"] == "applied"
    assert snapshot(world.root) == snapshot(twin)
