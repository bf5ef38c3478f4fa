"""The harness's command-line processes talk to an emulator and run none: they start without importing moto
(~0.8 CPU-s each, and a test run starts dozens of them: `python -m local up|deploy|down`, the supervisor)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.synth import REPO

PROBE = "import sys, {module}; print(__import__('json').dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'moto')))"


def moto_modules_imported_by(module: str) -> list[str]:
    shown = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=REPO, capture_output=True, text=True,
                           timeout=120, check=True)
    return json.loads(shown.stdout)


def test_python_m_local_and_the_supervisor_start_without_moto():
    assert moto_modules_imported_by("local.__main__") == []
    assert moto_modules_imported_by("local.supervisor") == []


def test_the_probe_sees_moto_where_the_emulator_runs_it():
    # Guards the probe: the server's own module does import moto.
    assert "moto.ecs" in moto_modules_imported_by("local.moto_live")
