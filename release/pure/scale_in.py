"""Holding scale-in off an ec2 group while an activation runs on its hosts.

A host the group terminates mid-activation fails the activate association's run there, and with
`MaxErrors 0` the whole release is rolled back. So `activate` and `rollback` suspend the group's
`Terminate` and `AZRebalance` processes (AZRebalance terminates too, to even out the zones) for the
stack update, and resume them on every way out. Only what this run suspended is resumed: a process an
operator had suspended before stays suspended. What a run suspended is written into its ledger entry
(`NOTE`) before the suspension, so the release that takes over the lock of a killed run resumes it.

The functions here are pure and tested directly; `release.flows.flow` calls the adapter (`release.adapters.aws`).
"""
from __future__ import annotations

import re
from typing import Iterable

# Terminate: scale-in and unhealthy replacement; AZRebalance: launches then terminates to even out zones.
PROCESSES = ("Terminate", "AZRebalance")
_NOTE = re.compile(r"scale-in held: suspended (?P<processes>[A-Za-z, ]+) on (?P<group>\S+) for the update")


def to_suspend(already: Iterable[str]) -> list[str]:
    """What this run suspends: the processes it needs that are not suspended already (by someone else)."""
    before = set(already)
    return [process for process in PROCESSES if process not in before]


def to_resume(ours: Iterable[str], suspended_now: Iterable[str]) -> list[str]:
    """What this run resumes: only what it suspended itself and is still suspended."""
    now = set(suspended_now)
    return [process for process in ours if process in now]


def kept(already: Iterable[str]) -> list[str]:
    """The processes this run needs that someone else suspended: left as they are, said as such."""
    before = set(already)
    return [process for process in PROCESSES if process in before]


def note(group: str, processes: Iterable[str]) -> str:
    """The entry's record of a suspension (read back by `suspended_by`); empty when nothing was suspended."""
    processes = list(processes)
    return f"scale-in held: suspended {', '.join(processes)} on {group} for the update" if processes else ""


def suspended_by(detail: str) -> tuple[str, list[str]] | None:
    """The group and processes an entry's detail says its run suspended, or None."""
    found = _NOTE.search(detail or "")
    if not found:
        return None
    processes = [p.strip() for p in found["processes"].split(",") if p.strip() in PROCESSES]
    return (found["group"], processes) if processes else None


def resume_command(group: str, processes: Iterable[str]) -> str:
    return (f"aws autoscaling resume-processes --auto-scaling-group-name {group} "
            f"--scaling-processes {' '.join(processes)}")
