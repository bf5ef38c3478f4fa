"""One botocore data loader for every session a harness process makes.

botocore keeps the JSON it loads (endpoints.json, each service's model) in its session's loader, so each new session
parses the same files again (~85 ms for the endpoints alone). The harness makes sessions freely: moto makes several
while its modules import (1.2 CPU-s to start the emulator, a third of it this JSON), `python -m local` one per
emulator client, and the tests one per `liftoff` run, deploy helper and test. The files do not change while a process
runs. The release tool is not the harness: a `liftoff` process makes its one session and loads its own.
"""
from __future__ import annotations

import botocore.loaders
import botocore.session

_made: dict[object, botocore.loaders.Loader] = {}


def _shared_loader(search_path_string=None) -> botocore.loaders.Loader:
    if search_path_string not in _made:
        _made[search_path_string] = botocore.loaders.create_loader(search_path_string)
    return _made[search_path_string]


def share_one_loader() -> None:
    """From now on, every botocore session this process makes reads its data through one loader (per data path)."""
    botocore.session.create_loader = _shared_loader
