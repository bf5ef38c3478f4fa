from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_every_template_passes_cfn_lint_without_warnings(shipped):
    templates = sorted(str(path) for path in Path(shipped.outdir).glob("*.template.json"))
    assert len(templates) == len(shipped.templates)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", *templates], capture_output=True, text=True
    )
    assert result.stdout == "" and result.returncode == 0, result.stdout + result.stderr
