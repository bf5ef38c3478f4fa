"""`liftoff migrate` for real on an emulated host: production (ec2, two host boxes booted from the launch
template's user data) in moto_server, the real release images in a real registry, the RDS stand-in a real
PostgreSQL. The release tool sends the stack's migrate document to one host through the Run Command
stand-in (local/run_command.py), the host's `liftoff-migrate` runs the image's `migrate` against the
database, and the tool records what it printed. Labels are read from the real registry's config blobs.

The world is this directory's (conftest.py), after the other modules' tests: the hosts serve 1.0.0, nothing warm.
"""
from __future__ import annotations

import io
import json

import pytest

from local import boxes
from local.aws import FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.principals import operator_session
from local.run_command import BoxesRuntime, RunCommandRefused
from release.pure import decisions as d
from release.adapters.ledger import Ledger
from release.cli import main
from tests.helpers.synth import CDK_JSON
from tests.local.host_boxes_world import UNIT_MINUTES

pytestmark = pytest.mark.cost(minutes=UNIT_MINUTES)

CONTRACT = "0003_require_note_title"


@pytest.fixture(scope="module")
def runtime(hosts, production, emulator):
    # liftoff runs as the stage's operator, held to liftoff-production-operator by the emulator (local/moto_iam.py).
    harness = EndpointSession(fake_session(), emulator.endpoint)
    return BoxesRuntime(hosts=hosts, service_stack=production.stack_names["service"],
                        registry_stack=production.stack_names["registry"], region=FAKE_ENVIRONMENT["AWS_REGION"],
                        session=operator_session(harness, "production"), stand_in_session=harness)


def liftoff(runtime, *argv: str):
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--stage", "production", "--config", str(CDK_JSON), "--json"], stdin=io.StringIO(""),
                stdout=out, stderr=err, aws=runtime, sleep=lambda _: None)
    return code, (json.loads(out.getvalue()) if out.getvalue() else {}), err.getvalue()


def schema_of(output: str) -> dict:
    (line,) = [json.loads(line) for line in output.splitlines()
               if line.startswith("{") and json.loads(line).get("message") == "schema state"]
    return line["schema"]


def test_liftoff_migrate_runs_once_on_one_host_against_the_database_and_holds_the_contract(runtime, hosts, production):
    code, doc, err = liftoff(runtime, "migrate", "--version", "1.1.0", "--yes", "--poll-interval", "0")
    assert code == 0, err
    # One host, the stack's own document, no contract step allowed: 1.0.0 is active and 0003 retires it.
    ((instance, document, parameters),) = runtime.run_command.runs
    assert instance in {box.instance_id for box in hosts.hosts}
    assert document == production.service_outputs["MigrateDocumentName"]
    assert parameters == {"ImageTag": ["1.1.0"], "AllowContracts": [""]}
    assert doc["plan"]["held"] == CONTRACT and [h["version"] for h in doc["plan"]["held_by"]] == ["1.0.0"]
    # The hosts' start-up migrate already applied the expand steps at boot; the one-off found them applied.
    assert doc["schema"] == {"applied": ["0001_create_notes", "0002_add_note_title"], "contracts": {}}
    assert "liftoff-migrate: migrate of 1.1.0 exited 0" in err and '"message": "schema state"' in err
    (entry,) = Ledger(production.client("dynamodb"), production.ledger_table).entries()
    assert (entry.gate, entry.to_version, entry.result) == ("migrate", "1.1.0", d.RESULT_SUCCEEDED)
    assert f"host {instance}" in entry.detail


def test_a_contract_applied_on_a_host_is_recorded_and_leaves_the_old_release_behind(runtime, hosts):
    box = hosts.hosts[0]
    # An allowed contract step, as the migrate document passes it: applied to the real database.
    result = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-migrate", "1.1.0", CONTRACT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert schema_of(result.stdout)["applied_now"] == [CONTRACT]
    # The host's own credentials directory for the run is gone; the unit's is untouched.
    assert boxes.run_on_box(hosts.daemon, box, "bash", "-c", "ls -d /run/liftoff-migrate.* 2>/dev/null").stdout == ""
    assert hosts.answer(box, "/readyz")[0] == 200

    code, doc, err = liftoff(runtime, "migrate", "--version", "1.1.0", "--yes", "--poll-interval", "0")
    assert code == 0, err
    assert doc["schema"]["contracts"] == {CONTRACT: "1.0.0"}
    code, versions, err = liftoff(runtime, "versions")
    assert code == 0, err
    fits = versions["schema"]["fit"]
    assert fits["1.0.0"]["fit"] == "left behind" and CONTRACT in fits["1.0.0"]["message"]
    assert fits["1.1.0"]["fit"] == "runs"


def test_the_run_command_stand_in_refuses_what_the_document_does_not_allow(runtime, production):
    document = production.service_outputs["MigrateDocumentName"]
    with pytest.raises(RunCommandRefused, match="AllowContracts='x; touch /tmp/owned' does not match"):
        runtime.run_command.render(document, {"ImageTag": ["1.1.0"], "AllowContracts": ["x; touch /tmp/owned"]})
    with pytest.raises(RunCommandRefused, match="ImageTag='latest' does not match"):
        runtime.run_command.render(document, {"ImageTag": ["latest"]})
    assert runtime.run_command.render(document, {"ImageTag": ["1.1.0"], "AllowContracts": [f"{CONTRACT} 0004_x"]}) == [
        f"/opt/liftoff/bin/liftoff-migrate '1.1.0' {CONTRACT} 0004_x"]
