"""How the end-to-end tests show their steady load's failed requests (what counts as failed: local/load.py's
PATIENT_CLIENT_SECONDS)."""
from __future__ import annotations

from local.load import LoadRun


def failures(run: LoadRun, limit: int = 20) -> list[tuple[float, float | None, str]]:
    """The first failed requests as (seconds from the run's start when sent, seconds they took, outcome), and the
    run's marks: when the failures came, for an assertion's message."""
    failed = [(round(record.sent - run.started, 2), None if record.latency_s is None else round(record.latency_s, 2),
               record.outcome) for record in run.records if record.failed]
    marks = [(round(at - run.started, 2), name, "mark") for name, at in run.marks.items()]
    return sorted(failed[:limit] + marks, key=lambda item: item[0])
