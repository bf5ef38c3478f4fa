"""The seam through which something other than AWS answers "what runs": `LIFTOFF_RUNTIME` names a factory.

Unset, `liftoff` talks to AWS (`release.adapters.aws.Aws`). Set to `module:callable` (e.g. the local harness's
`local.runtime:emulator`), the CLI imports that module and calls
`callable(stage=StageConfig, region=str | None, environ=Mapping)`, which returns a `release.adapters.aws.Aws`
(or a subclass) or raises `RuntimeRefused` saying why it will not run here. The release tool knows
nothing about the runtimes that plug in: which endpoints one accepts, and what it stands in for, are
the factory's own business.
"""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Mapping

from config import StageConfig
from release.adapters.aws import Aws

RUNTIME_VARIABLE = "LIFTOFF_RUNTIME"
_FACTORY = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


class RuntimeRefused(Exception):
    """Raised by a factory (or here) when the runtime cannot be used: `message` says why, `hint` what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


def adapter(stage: StageConfig, region: str | None, environ: Mapping[str, str]) -> Aws:
    """The adapter `liftoff` uses: AWS, or the factory LIFTOFF_RUNTIME names."""
    value = environ.get(RUNTIME_VARIABLE, "")
    if not value:
        return Aws(region=region)
    if not _FACTORY.fullmatch(value):
        raise RuntimeRefused(f"{RUNTIME_VARIABLE}={value!r} does not name a runtime factory: expected module:callable "
                             "(e.g. local.runtime:emulator)",
                             "unset it for AWS, or use the export line `make local-up` printed (docs/release-tool.md)")
    module_name, factory_name = value.split(":")
    # A console-script `liftoff` has the installed packages on its path, not the checkout's harness folders
    # (local/ is not installed): look next to release/ as well, after everything installed.
    checkout = str(Path(__file__).resolve().parents[2])
    if checkout not in sys.path:
        sys.path.append(checkout)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RuntimeRefused(f"{RUNTIME_VARIABLE}={value}: cannot import {module_name}: {error}",
                             "run liftoff from the checkout's .venv (`make setup`), or unset it for AWS") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise RuntimeRefused(f"{RUNTIME_VARIABLE}={value}: {module_name} has no factory {factory_name!r}",
                             "use the export line `make local-up` printed, or unset it for AWS")
    made = factory(stage=stage, region=region, environ=environ)
    if not isinstance(made, Aws):
        raise RuntimeRefused(f"{RUNTIME_VARIABLE}={value}: the factory returned {type(made).__name__}, not a release.adapters.aws.Aws")
    return made
