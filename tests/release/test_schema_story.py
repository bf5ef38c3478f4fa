"""The three-release story, run through `liftoff` on the staging stage in moto against a real PostgreSQL:

    1.0.0  ships 0001 (notes)
    1.1.0  ships 0002 (expand: a nullable title)
    1.2.0  ships 0003 (contract after-retiring 1.0.0: title NOT NULL)

Each release image is a real service tree (the service's code with the migrations that release ships and
its VERSION), labelled from its own migration files exactly as the build labels it. The one-off
migrate that ECS or SSM Run Command would start is that tree's `python -m liftoff_service migrate`,
run against the test database: the only stand-in (moto starts no task). The stage keeps a rollback
window of the last release ({"releases": 1}, in a copy of cdk.json).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from release.pure import decisions as d
from release.adapters.schema_aws import OneOff
from tests.helpers.synth import CDK_JSON
from tests.release.helpers import EmulatedRuntime, ReleaseStage

SERVICE_DIR = Path(__file__).resolve().parents[2] / "service"
sys.path.insert(0, str(SERVICE_DIR.parent / "tests" / "service"))
from service_harness import columns, create_database, running_postgres  # noqa: E402

sys.path.insert(0, str(SERVICE_DIR))
from liftoff_service.schema import read_contract  # noqa: E402

SHIPS = {
    "1.0.0": ["0001_create_notes"],
    "1.1.0": ["0001_create_notes", "0002_add_note_title"],
    "1.2.0": ["0001_create_notes", "0002_add_note_title", "0003_require_note_title"],
}
CONTRACT = "0003_require_note_title"


def image_tree(root: Path, version: str) -> Path:
    """/srv/service of the image of `version`: the service code, the migrations it ships, its VERSION."""
    tree = root / f"image-{version}"
    shutil.copytree(SERVICE_DIR / "liftoff_service", tree / "liftoff_service", ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "migrations").mkdir()
    for step in SHIPS[version]:
        shutil.copy(SERVICE_DIR / "migrations" / f"{step}.sql", tree / "migrations")
    (tree / "VERSION").write_text(f"{version}\n")
    return tree


class LocalOneOff(EmulatedRuntime):
    """The emulated stage, plus the one-off migrate run for real: the image's tree against the test database."""

    def __init__(self, emulated, *, trees: dict[str, Path], database):
        super().__init__(emulated)
        self.trees, self.database, self.runs = trees, database, []

    def run_one_off(self, outputs, *, compute, image, tag, arguments, timeout, poll, sleep, monotonic, say) -> OneOff:
        tree = self.trees[tag]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("DB_")}, "PYTHONPATH": str(tree), "APP_VERSION": tag,
               "DB_HOST": self.database.host, "DB_PORT": str(self.database.port), "DB_NAME": self.database.name,
               "DB_USER": self.database.user, "DB_PASSWORD": self.database.password}
        done = subprocess.run([sys.executable, "-m", "liftoff_service", "migrate", *arguments], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=120)
        self.runs.append((tag, arguments))
        return OneOff(done.returncode, done.stdout + done.stderr, f"local tree of {tag}")


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as server:
        yield server


@pytest.fixture
def stage(deploy_emulated_stage, postgres, tmp_path):
    from local import aws

    emulated = deploy_emulated_stage("staging", image_tag="1.0.0", staged_image_tag="1.0.0")
    trees = {version: image_tree(tmp_path, version) for version in SHIPS}
    labels = {version: read_contract(tree / "migrations", tree / "VERSION").labels() for version, tree in trees.items()}
    aws.push_images(emulated.session, emulated.repository_name, list(SHIPS), labels=labels)
    config = json.loads(CDK_JSON.read_text())
    config["context"]["liftoff"]["stages"]["staging"]["rollback_window"] = {"releases": 1}
    (tmp_path / "cdk.json").write_text(json.dumps(config))
    database = create_database(postgres, f"story_{os.getpid()}_{tmp_path.name[-12:].replace('-', '_')}")
    release_stage = ReleaseStage(emulated)
    runtime = LocalOneOff(emulated, trees=trees, database=database)

    def run(*argv):
        return release_stage.run(*argv, aws=runtime, config=tmp_path / "cdk.json")

    return release_stage, run, runtime, database


def test_expand_in_1_1_0_contract_in_1_2_0_after_1_0_0_leaves_the_window(stage):
    release_stage, run, runtime, database = stage

    first = run("migrate", "--version", "1.0.0", "--yes", "--json")
    assert first.code == 0, first.err
    assert first.json["schema"] == {"applied": ["0001_create_notes"], "contracts": {}}

    versions = run("versions", "--json").json["schema"]["fit"]
    assert (versions["1.0.0"]["fit"], versions["1.1.0"]["fit"], versions["1.2.0"]["fit"]) == ("runs", "needs migrate", "needs migrate")

    # 1.1.0's expand step is not applied: activate refuses and names the command to run.
    assert run("stage", "1.1.0").code == 0
    refused = run("activate", "1.1.0", "--yes")
    assert refused.code == d.EXIT_REFUSED
    assert "1.1.0 needs expand step 0002_add_note_title, which is not applied" in refused.err
    assert "liftoff migrate --stage staging --version 1.1.0" in refused.err
    assert release_stage.parameters()["ImageTag"] == "1.0.0"
    assert "title" not in columns(database)

    # --migrate runs it first (its own ledger entry), then switches.
    activated = run("activate", "1.1.0", "--yes", "--migrate")
    assert activated.code == 0, activated.err
    assert columns(database)["title"] == "YES"
    assert release_stage.parameters()["ImageTag"] == "1.1.0"

    # 1.2.0 ships the contract step; 1.0.0 was replaced by the last release, so it is in the window: held.
    assert run("stage", "1.2.0").code == 0
    held = run("migrate", "--yes", "--json")
    assert held.code == 0, held.err
    plan = held.json["plan"]
    assert (plan["allowed"], plan["held"], plan["held_after_retiring"]) == ([], CONTRACT, "1.0.0")
    assert [h["version"] for h in plan["held_by"]] == ["1.0.0"]
    assert f"contract step {CONTRACT} (after-retiring 1.0.0) held" in held.err
    assert columns(database)["title"] == "YES"  # still nullable: 1.0.0 could come back and insert without one
    assert runtime.runs[-1] == ("1.2.0", [])
    # `status` shows the schema and the held step with its holder, as migrate would decide it now.
    status = run("status", "--json")
    assert status.code == 0, status.err
    schema = status.json["schema"]
    assert schema["state"]["applied"] == ["0001_create_notes", "0002_add_note_title"] and schema["migrate_version"] == "1.2.0"
    assert (schema["contracts"]["held"], [h["version"] for h in schema["contracts"]["held_by"]]) == (CONTRACT, ["1.0.0"])
    assert "  schema   head 0002_add_note_title: 2 step(s) applied (recorded " in status.err
    assert (f"migrate of 1.2.0 now: contract step {CONTRACT} (after-retiring 1.0.0) held, and every step after it: "
            "still needed by 1.0.0 (warm; leaves at ") in status.err

    # 1.2.0 needs only 0002, so it activates; 1.0.0 leaves the window (the last release replaced 1.1.0).
    assert run("activate", "1.2.0", "--yes").code == 0
    applied = run("migrate", "--yes", "--json")
    assert applied.code == 0, applied.err
    assert applied.json["plan"]["allowed"] == [CONTRACT] and applied.json["plan"]["held"] is None
    assert applied.json["schema"]["contracts"] == {CONTRACT: "1.0.0"}
    assert runtime.runs[-1] == ("1.2.0", ["--allow-contract", CONTRACT])
    assert columns(database)["title"] == "NO"
    shown = run("status").out
    assert f"contract steps applied: {CONTRACT} (after-retiring 1.0.0)" in shown
    assert "migrate of 1.2.0 now: no contract step pending" in shown

    # The schema has left 1.0.0 behind: rollback --to it is refused with the step that did it, --force or not.
    for extra in ((), ("--force",)):
        back = run("rollback", "--to", "1.0.0", "--yes", *extra)
        assert back.code == d.EXIT_REFUSED, back.err
        assert (f"1.0.0 (release 1.0.0) cannot run on this schema: contract step {CONTRACT} (after-retiring 1.0.0) "
                "removed what it needs") in back.err
        assert "--force does not override this" in back.err
    assert release_stage.parameters()["ImageTag"] == "1.2.0"
    fits = run("versions", "--json").json["schema"]["fit"]
    assert (fits["1.0.0"]["fit"], fits["1.1.0"]["fit"], fits["1.2.0"]["fit"]) == ("left behind", "runs", "runs")
    # A plain rollback still goes back one release: 1.1.0 runs on the contracted schema.
    assert run("rollback", "--yes").code == 0
    assert release_stage.parameters()["ImageTag"] == "1.1.0"

    # Every step is in the history, oldest first here.
    history = [(e.gate, e.to_version, e.result) for e in reversed(release_stage.entries())]
    assert history == [
        ("migrate", "1.0.0", "succeeded"),
        ("stage", "1.1.0", "succeeded"),
        ("activate", "1.1.0", "refused"),
        ("migrate", "1.1.0", "succeeded"),
        ("activate", "1.1.0", "succeeded"),
        ("stage", "1.2.0", "succeeded"),
        ("migrate", "1.2.0", "succeeded"),
        ("activate", "1.2.0", "succeeded"),
        ("migrate", "1.2.0", "succeeded"),
        ("rollback", "1.0.0", "refused"),
        ("rollback", "1.0.0", "refused"),
        ("rollback", "1.1.0", "succeeded"),
    ]
    text = run("history").out
    assert f"contract step {CONTRACT} (after-retiring 1.0.0) held" in text and "cannot run on this schema" in text


def test_a_contract_step_is_held_while_the_release_it_retires_is_active(stage):
    release_stage, run, runtime, database = stage
    # Straight to 1.2.0's migrations while 1.0.0 is active: both expand steps run, the contract waits.
    held = run("migrate", "--version", "1.2.0", "--yes", "--json")
    assert held.code == 0, held.err
    assert [(h["version"], h["why"]) for h in held.json["plan"]["held_by"]] == [("1.0.0", "active")]
    assert held.json["schema"]["applied"] == ["0001_create_notes", "0002_add_note_title"]
    assert columns(database)["title"] == "YES"
    # 1.0.0 still runs on this schema: nothing left it behind.
    assert run("versions", "--json").json["schema"]["fit"]["1.0.0"]["fit"] == "runs"


def test_migrate_without_a_runner_says_so_and_records_the_failure(released_staging):
    from local import aws

    aws.push_images(released_staging.emulated.session, released_staging.emulated.repository_name, ["1.2.0"],
                    labels={"1.2.0": {"io.liftoff.release": "1.2.0", "io.liftoff.schema.head": "0003_x",
                                      "io.liftoff.schema.requires": "0002_y", "io.liftoff.schema.contracts": ""}})
    run = released_staging.run("migrate", "--version", "1.2.0", "--yes")
    assert run.code == d.EXIT_AWS
    assert "the emulator runs no one-off task" in run.err
    (entry,) = released_staging.entries()
    assert (entry.gate, entry.to_version, entry.result) == ("migrate", "1.2.0", d.RESULT_FAILED)


def test_migrate_refuses_an_image_without_a_schema_contract(released_staging):
    run = released_staging.run("migrate", "--version", "1.1.0", "--yes")
    assert run.code == d.EXIT_REFUSED
    assert "1.1.0 declares no schema contract (no io.liftoff.schema.head label)" in run.err
    (entry,) = released_staging.entries()
    assert (entry.gate, entry.result) == ("migrate", d.RESULT_REFUSED)


@pytest.mark.parametrize("tag, says", [("latest", "mutable"), ("1.2", "not a release tag")])
def test_migrate_refuses_a_bad_tag_before_anything_is_asked_or_recorded(released_staging, tag, says):
    run = released_staging.run("migrate", "--version", tag, "--yes")
    assert run.code == d.EXIT_USAGE and says in run.err
    assert released_staging.entries() == [] and released_staging.ledger().read_lock() is None


def test_migrate_asks_before_it_runs_and_changes_nothing_unconfirmed(stage):
    release_stage, run, runtime, database = stage
    refused = release_stage.run("migrate", "--version", "1.1.0", aws=runtime, config=None)
    assert refused.code == d.EXIT_USAGE and "refusing without confirmation" in refused.err
    assert runtime.runs == [] and release_stage.entries() == []


def test_the_gate_refuses_when_the_labels_cannot_be_read_and_the_stage_has_a_schema(stage):
    from release.adapters.schema_aws import LabelsUnreadable

    release_stage, run, runtime, database = stage
    assert run("migrate", "--version", "1.0.0", "--yes").code == 0
    assert run("stage", "1.1.0").code == 0

    class Unreachable(LocalOneOff):
        def download_layer(self, repository, digest):
            raise LabelsUnreadable(f"cannot download the config blob {digest} of {repository}: timed out")

    blind = Unreachable(release_stage.emulated, trees=runtime.trees, database=database)
    refused = release_stage.run("activate", "1.1.0", "--yes", aws=blind)
    assert refused.code == d.EXIT_AWS and "the schema gate cannot tell whether 1.1.0 runs on this schema" in refused.err
    assert release_stage.parameters()["ImageTag"] == "1.0.0"
