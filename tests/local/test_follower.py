"""local/follower.py: the one loop behind the load balancer's controller, the alarm stand-in and the State
Manager stand-in."""
from __future__ import annotations

import threading
import time

import pytest

from local.follower import Follower
from tests.helpers.box_world import wait_until


def test_the_first_step_runs_in_the_caller_and_the_rest_go_on_past_an_error_until_stopped():
    steps, said, third = [], [], threading.Event()
    loop_running_at_first_step = []

    def step():
        if not steps:
            loop_running_at_first_step.append(follower.running)
        steps.append(threading.current_thread().name)
        if len(steps) == 2:
            raise ConnectionResetError("the emulator dropped the call")
        if len(steps) == 3:
            third.set()

    follower = Follower("alarm stand-in", step, interval=0.01, say=said.append)
    follower.start()
    # Done in the caller before the loop's thread started (the loop may have taken more steps since: it runs on).
    assert steps[0] == threading.current_thread().name and loop_running_at_first_step == [False]
    assert third.wait(10), "the loop ended at the step that raised"
    follower.stop()
    assert not follower.running
    assert steps[1:3] == ["alarm stand-in", "alarm stand-in"]
    assert said == ["  alarm stand-in: the emulator dropped the call"]
    stopped_at = len(steps)
    time.sleep(0.1)  # ten intervals
    assert len(steps) == stopped_at  # nothing runs after stop


def test_a_first_step_that_fails_raises_from_start_and_starts_no_thread():
    def step():
        raise RuntimeError("no target group")

    follower = Follower("load balancer controller", step, interval=0.01)
    with pytest.raises(RuntimeError, match="no target group"):
        follower.start()
    assert not follower.running
    follower.stop()  # stopping what never started is harmless


def test_wake_runs_the_next_step_now_instead_of_after_the_interval():
    stepped = threading.Semaphore(0)
    follower = Follower("State Manager stand-in", stepped.release, interval=3600)
    follower.start()
    assert stepped.acquire(timeout=1)  # the first step, in the caller
    assert not stepped.acquire(timeout=0.3)  # an hour to the next poll
    follower.wake()
    assert stepped.acquire(timeout=10), "a woken follower waited for its interval"
    assert not stepped.acquire(timeout=0.3)  # one wake, one step
    follower.stop()
    assert not follower.running


def test_a_wake_during_a_step_runs_one_more_step_after_it():
    # The change may have come after the step read what it follows: it must not wait for the next poll.
    in_step, release = threading.Event(), threading.Event()
    steps = []

    def step():
        steps.append(time.monotonic())
        if len(steps) == 2:
            in_step.set()
            release.wait(10)

    follower = Follower("State Manager stand-in", step, interval=3600)
    follower.start()
    follower.wake()
    assert in_step.wait(10)
    follower.wake()  # during the second step
    release.set()
    wait_until(lambda: len(steps) >= 3, 10, "a third step after the wake during the second", interval=0.01)
    follower.stop()
    assert len(steps) == 3


def test_stop_ends_a_follower_waiting_out_a_long_interval_at_once():
    follower = Follower("State Manager stand-in", lambda: None, interval=3600)
    follower.start()
    began = time.monotonic()
    follower.stop()
    assert not follower.running
    assert time.monotonic() - began < 5
