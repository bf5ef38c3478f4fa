"""local/processes.py: a process's identity (its start time) and its end, as the kernel tells them."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from local import processes


def test_a_running_process_has_its_start_time_and_a_zombie_or_a_reaped_one_has_none():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    started = processes.start_time(child.pid)
    assert isinstance(started, int) and started > 0
    assert processes.start_time(child.pid) == started  # the same process, asked again
    assert processes.start_time(child.pid) != processes.start_time(os.getpid())
    child.stdin.close()  # it exits; unreaped, it stays a zombie
    deadline = time.monotonic() + 30
    while processes.start_time(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes.start_time(child.pid) is None
    assert os.waitpid(child.pid, os.WNOHANG)[0] == child.pid  # it was a zombie, not yet reaped
    child.returncode = 0  # reaped here, not by Popen
    assert processes.start_time(child.pid) is None
