"""The image's schema contract, read from its migration files (standard library only).

Every file in service/migrations/ starts with one header line saying which kind of step it is:

    -- liftoff: expand
    -- liftoff: contract after-retiring 1.0.0

From those files an image declares, as OCI labels set at build, what the release tool needs to know
without running it:

    io.liftoff.release          the service release the image carries (service/VERSION)
    io.liftoff.schema.head      the newest migration it ships
    io.liftoff.schema.requires  the oldest schema it runs against: its newest expand step
                                (every expand step it ships is applied before it serves)
    io.liftoff.schema.contracts the contract steps it ships, `ID:X.Y.Z` (X.Y.Z: the newest release
                                that still needs the old shape), space separated

The Dockerfile takes them as build arguments and its build stage runs `verify` on them, so a build
whose labels disagree with its migration files fails: the labels cannot drift by hand.

    python -m liftoff_service.schema build-args [--migrations DIR] [--version-file FILE]
    python -m liftoff_service.schema verify NAME=VALUE ...
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = SERVICE_DIR / "migrations"
VERSION_FILE = SERVICE_DIR / "VERSION"

_HEADER = re.compile(r"^-- liftoff: (?P<kind>expand|contract)(?: after-retiring (?P<release>\S+))?\s*$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")

LABEL_RELEASE = "io.liftoff.release"
LABEL_HEAD = "io.liftoff.schema.head"
LABEL_REQUIRES = "io.liftoff.schema.requires"
LABEL_CONTRACTS = "io.liftoff.schema.contracts"
# Label -> the Dockerfile's build argument that carries it.
BUILD_ARGS = {
    LABEL_RELEASE: "LIFTOFF_RELEASE",
    LABEL_HEAD: "LIFTOFF_SCHEMA_HEAD",
    LABEL_REQUIRES: "LIFTOFF_SCHEMA_REQUIRES",
    LABEL_CONTRACTS: "LIFTOFF_SCHEMA_CONTRACTS",
}


class SchemaError(ValueError):
    """A migration file or a declared contract is malformed; the message names it and what is allowed."""


def parse_version(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise SchemaError(f"release version {text!r} is not MAJOR.MINOR.PATCH semver (e.g. '1.1.0')")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def read_release(path: Path = VERSION_FILE) -> str:
    text = path.read_text(encoding="utf-8").strip()
    parse_version(text)
    return text


@dataclass(frozen=True)
class Step:
    migration_id: str
    path: Path
    kind: str  # "expand" or "contract"
    after_retiring: str | None = None


def read_step(path: Path, *, release: str | None = None) -> Step:
    first_line = path.read_text(encoding="utf-8").split("\n", 1)[0]
    match = _HEADER.match(first_line)
    if not match:
        raise SchemaError(
            f"{path.name}: the first line must be '-- liftoff: expand' or "
            f"'-- liftoff: contract after-retiring X.Y.Z', got {first_line!r}"
        )
    kind, retiring = match.group("kind"), match.group("release")
    if kind == "contract":
        if retiring is None:
            raise SchemaError(
                f"{path.name}: a contract step must name the newest release that needs the "
                "old shape: '-- liftoff: contract after-retiring X.Y.Z'"
            )
        if release is not None and parse_version(retiring) >= parse_version(release):
            # A typo here would silently never (or always) hold the step; the shipping release must survive it.
            raise SchemaError(
                f"{path.name}: 'after-retiring {retiring}' must name a release older than {release}, "
                "the release that ships it (a contract step may not break the code it ships with)"
            )
        parse_version(retiring)
    elif retiring is not None:
        raise SchemaError(f"{path.name}: 'after-retiring' only applies to a contract step")
    return Step(migration_id=path.stem, path=path, kind=kind, after_retiring=retiring)


def read_steps(migrations_dir: Path = MIGRATIONS_DIR, *, release: str | None = None) -> list[Step]:
    paths = sorted(p for p in migrations_dir.glob("*.sql") if not p.name.endswith(".rollback.sql"))
    if not paths:
        raise SchemaError(f"no migrations found in {migrations_dir}")
    return [read_step(path, release=release) for path in paths]


@dataclass(frozen=True)
class Contract:
    release: str
    head: str
    requires: str  # "" when the image ships no expand step
    contracts: tuple[tuple[str, str], ...] = ()

    def labels(self) -> dict[str, str]:
        return {
            LABEL_RELEASE: self.release,
            LABEL_HEAD: self.head,
            LABEL_REQUIRES: self.requires,
            LABEL_CONTRACTS: " ".join(f"{step}:{retiring}" for step, retiring in self.contracts),
        }

    def build_args(self) -> dict[str, str]:
        return {BUILD_ARGS[label]: value for label, value in self.labels().items()}


def contract_of(steps: list[Step], release: str) -> Contract:
    parse_version(release)
    expands = [step.migration_id for step in steps if step.kind == "expand"]
    return Contract(
        release=release,
        head=steps[-1].migration_id,
        requires=expands[-1] if expands else "",
        contracts=tuple((s.migration_id, s.after_retiring) for s in steps if s.kind == "contract"),
    )


def read_contract(migrations_dir: Path = MIGRATIONS_DIR, version_file: Path = VERSION_FILE) -> Contract:
    release = read_release(version_file)
    return contract_of(read_steps(migrations_dir, release=release), release)


def verify_build_args(given: dict[str, str], expected: Contract) -> list[str]:
    """What is wrong with the build arguments a build was given (empty: they match the files)."""
    problems = []
    for name, value in expected.build_args().items():
        if given.get(name, "") != value:
            problems.append(f"{name}={given.get(name, '')!r} but the migration files say {value!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liftoff_service.schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-args", help="print one NAME=VALUE line per build argument")
    verify = commands.add_parser("verify", help="exit 1, naming each, when NAME=VALUE disagrees with the files")
    verify.add_argument("pairs", nargs="*", metavar="NAME=VALUE")
    for sub in (build, verify):
        sub.add_argument("--migrations", type=Path, default=MIGRATIONS_DIR)
        sub.add_argument("--version-file", type=Path, default=VERSION_FILE)
    args = parser.parse_args(argv)
    try:
        contract = read_contract(args.migrations, args.version_file)
    except (SchemaError, OSError) as error:
        print(f"schema: {error}", file=sys.stderr)
        return 1
    if args.command == "build-args":
        for name, value in contract.build_args().items():
            print(f"{name}={value}")
        return 0
    given = dict(pair.split("=", 1) for pair in args.pairs if "=" in pair)
    problems = verify_build_args(given, contract)
    if problems:
        print("schema labels do not match the migration files: " + "; ".join(problems)
              + ". Build with the arguments `python -m liftoff_service.schema build-args` prints "
              "(pipeline/build.sh and local/images.py pass them).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
