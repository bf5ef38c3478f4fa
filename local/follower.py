"""The harness's one follower loop: the load balancer's controller, the alarm stand-in and the State Manager
stand-in each follow what the emulator holds with one.

A follower runs its step once in the caller (so what the step sets up exists when `start` returns, and a
first failure raises there), then on its own thread every `interval` seconds until `stop`, or at once when
`wake` says what it follows has changed (a change made in this process need not wait for the next poll). A step that
raises later is said in one line and the loop goes on: a transient emulator or socket error must not end
a follower that a whole walk relies on.
"""
from __future__ import annotations

import threading
from typing import Callable

Say = Callable[[str], None]


class Follower:
    def __init__(self, name: str, step: Callable[[], object], *, interval: float, say: Say = print,
                 stop_timeout: float = 10.0):
        self.name, self.step, self.interval, self.say, self.stop_timeout = name, step, interval, say, stop_timeout
        self._stop = threading.Event()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.step()
        self._thread = threading.Thread(target=self._follow, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops after the step in progress (waited for up to `stop_timeout`: a gate run may take minutes)."""
        self._stop.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout)

    def wake(self) -> None:
        """The next step now; during a step, one more right after it (the change may have come too late for it)."""
        self._woken.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _follow(self) -> None:
        while True:
            self._woken.wait(self.interval)
            self._woken.clear()
            if self._stop.is_set():
                return
            try:
                self.step()
            except Exception as error:
                self.say(f"  {self.name}: {error}")
