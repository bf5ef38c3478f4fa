"""The image's entry point: `serve` (the default CMD) or `migrate`.

    python -m liftoff_service serve      # exec gunicorn, which becomes PID 1 and gets SIGTERM
    python -m liftoff_service migrate [--allow-contract ID ...]
        # apply the pending expand steps (and the contract steps named), refuse on a schema that has
        # left this release behind (exit 4), then exit. Containers run it as they start; the release
        # tool runs it once per release as a one-off (`liftoff migrate`), naming the contract steps
        # the stage allows.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import ConfigError, database_settings_from_env, settings_from_env
from .logs import configure_logging
from .api import load_release_api
from .releases import read_current_version
from .schema import SchemaError

log = logging.getLogger("liftoff.service")


def serve(release: str | None) -> None:
    # Fail here, with a clear message, rather than inside every gunicorn worker.
    settings_from_env(os.environ)
    load_release_api(release or read_current_version())
    app_spec = "liftoff_service.wsgi:create()" if release is None else (
        f"liftoff_service.wsgi:create(release={release!r})"
    )
    gunicorn_args = [
        sys.executable, "-m", "gunicorn", "--config", "python:liftoff_service.gunicorn_conf",
        app_spec,
    ]
    os.execv(sys.executable, gunicorn_args)


def migrate(allow_contracts: list[str]) -> int:
    from .migrations import LeftBehind, MigrationError, migrate_database

    try:
        migrate_database(database_settings_from_env(os.environ), allow_contracts=frozenset(allow_contracts))
    except LeftBehind as error:
        log.error("refusing to run: the schema has left this release behind", extra={"reason": str(error)})
        return 4
    except MigrationError as error:
        log.error("migrate failed", extra={"reason": str(error)})
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liftoff_service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve HTTP on $PORT (default)")
    serve_parser.add_argument(
        "--release", help="serve another live release's API (tests and demos); default: VERSION"
    )
    migrate_parser = commands.add_parser(
        "migrate", help="apply pending expand steps (and the contract steps named), then exit")
    migrate_parser.add_argument(
        "--allow-contract", action="append", default=[], metavar="ID",
        help="a contract step the stage allows now (the release tool decides; repeat for several)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.command == "serve":
            serve(args.release)
            return 0  # not reached: exec
        return migrate(args.allow_contract)
    except (ConfigError, SchemaError, LookupError) as error:
        log.error("cannot start", extra={"reason": str(error)})
        return 2


if __name__ == "__main__":
    sys.exit(main())
