"""local/follower.py: the one loop behind the load balancer's controller, the alarm stand-in and the State
Manager stand-in."""
from __future__ import annotations

import threading
import time

import pytest

from local.follower import Follower


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
