"""Imported once by the fork server of the harness's warm emulator starts (local/emulator.py `start_warm`): each
emulator forked from it begins with moto imported, the harness's models installed and AWS's managed policies loaded
(~1.5 CPU-s an emulator otherwise spends before its first answer, measured)."""
from local import moto_server

moto_server.prepare()
