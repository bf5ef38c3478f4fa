"""Session-wide fixtures: the CDK app is synthesized once per session (jsii start-up costs seconds).

Markers set here, at collection, so nobody maintains a list: a test that needs Docker (the
`docker_daemon` fixture, directly or through another fixture) is `docker`; one that deploys stacks
into moto or starts it (the `emulated_aws` fixture, or a module that uses `local.emulator`, the
moto_server process) is `emulator`. `make check`, the fast lane, runs neither.

For pytest-xdist (`make test` runs five workers with `--dist loadgroup`), work units are made here
too: a module's tests that use a module- or class-scoped fixture are one unit (its world starts once,
on one worker), as are a directory's whose modules share a package-scoped world (tests/local/host_boxes_world);
any other test is a unit of its own. Every box world, task world and emulator is named and
ported for itself, so units run side by side on one Docker daemon (tests/helpers/docker_fixtures.py:
one daemon and one build of each image for the whole run). The Docker units go first, the costliest
first (a module's `pytest.mark.cost(minutes=...)`, measured, says what it costs alone, shared among its tests
where each is a unit of its own; a test's own mark is its own): they mostly wait on real processes, so they
overlap. The rest follow, the costliest first too. With four workers or more those after the first three
are short lanes: they take the short, CPU-bound units from the start, using the cores while the worlds wait;
then every worker takes what is left. A worker about to finish a Docker test never has the next Docker unit committed to it
(another worker may be free first): tests/helpers/scheduling.py decides. Session fixtures (the synthesis) run
once per worker.

xdist 3.8's own loadgroup cannot see these units under pytest 9 (it renames `item._nodeid`, which
pytest 9 no longer reads): each worker writes the units it collected to a file, and the scheduler
below (`XdistUnits`) reads them.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.docker_fixtures import held, stop_the_runs_daemon
from tests.helpers.scheduling import is_the_short_lane, next_unit, unit_minutes
from tests.helpers.synth import Synthesis, box_world_context, cdk_context, synthesize

pytest_plugins = ["tests.helpers.emulator_fixtures", "tests.helpers.docker_fixtures"]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    needs_docker = [item for item in items if "docker_daemon" in getattr(item, "fixturenames", ())]
    docker_modules = {item.path for item in needs_docker}
    for item in needs_docker:
        item.add_marker(pytest.mark.docker)
    for item in items:
        if "emulated_aws" in getattr(item, "fixturenames", ()) or _starts_the_emulator(item):
            item.add_marker(pytest.mark.emulator)
    grouped = set()
    for item in items:
        unit = _work_unit(item)
        if unit is not None:
            item.add_marker(pytest.mark.xdist_group(unit))
            grouped.add(item.nodeid)
    tests_in_module = Counter(item.path for item in items)
    minutes = {item.nodeid: _cost_minutes(item, one_unit=item.nodeid in grouped, tests_in_module=tests_in_module[item.path])
               for item in items}
    # Stable: the order inside each module is kept.
    items.sort(key=lambda item: (item.path not in docker_modules, -minutes[item.nodeid]))
    workerinput = getattr(config, "workerinput", None)
    if workerinput and UNITS_DIR_KEY in workerinput:
        units = {item.nodeid: next((mark.args[0] for mark in item.iter_markers("xdist_group")), item.nodeid) for item in items}
        docker_units = sorted({units[item.nodeid] for item in needs_docker})
        written = Path(workerinput[UNITS_DIR_KEY]) / f"{workerinput['workerid']}.json"
        partial = written.with_suffix(".partial")
        partial.write_text(json.dumps({"units": units, "docker": docker_units}))
        partial.replace(written)


def _cost_minutes(item, *, one_unit: bool, tests_in_module: int) -> float:
    test_mark = next((float(mark.kwargs["minutes"]) for mark in item.own_markers if mark.name == "cost"), None)
    module_mark = item.get_closest_marker("cost")
    return unit_minutes(test_mark=test_mark, module_mark=float(module_mark.kwargs["minutes"]) if module_mark else None,
                        one_unit=one_unit, tests_in_module=tests_in_module)


UNITS_DIR_KEY = "liftoff_units_dir"


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "numprocesses", None) \
            and not hasattr(config, "workerinput"):
        # The controller of an xdist run runs no test: it schedules, and needs neither moto nor an emulator (~1.5 CPU-s).
        config.pluginmanager.register(XdistUnits(config), "liftoff-xdist-units")
        return
    # The in-process moto (`mock_aws`) gets the same ECS CloudFormation models as the emulator's moto_server, in every
    # test process, whatever runs first.
    from local import botocore_data, moto_models

    moto_models.install()
    # Sessions are made per `liftoff` run, per deploy helper, per test: a fifth of test_cli.py's time was botocore
    # parsing the same JSON again (profiled).
    botocore_data.share_one_loader()
    # A run starts some thirty emulators: each forks from one prepared server instead of importing moto afresh.
    from local import emulator

    emulator.start_warm()


def pytest_unconfigure(config):
    # The controller of an xdist run: the workers share one Docker daemon, stopped only once all of them are done.
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        stop_the_runs_daemon()


class XdistUnits:
    """The controller's side: hands each worker a directory for its units, and schedules by them."""

    def __init__(self, config):
        self.config = config
        self.directory: Path | None = None  # made only when workers start

    def pytest_configure_node(self, node):
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="liftoff-xdist-units-"))
            self.config.add_cleanup(lambda: shutil.rmtree(self.directory, ignore_errors=True))
        node.workerinput[UNITS_DIR_KEY] = str(self.directory)

    def pytest_xdist_make_scheduler(self, config, log):
        if config.getoption("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadScopeScheduling

        plugin = self

        class UnitScheduling(LoadScopeScheduling):
            units: dict[str, str] | None = None
            docker_units: frozenset[str] = frozenset()

            def _split_scope(self, nodeid: str) -> str:
                # Called once every worker has collected (and so written its file).
                if self.units is None:
                    found = sorted(plugin.directory.glob("*.json")) if plugin.directory else []
                    written = json.loads(found[0].read_text()) if found else {}
                    self.units, self.docker_units = written.get("units", {}), frozenset(written.get("docker", ()))
                return self.units.get(nodeid, nodeid)

            def _assign_work_unit(self, node) -> None:
                unit = next_unit(self.workqueue, self.docker_units, holds_a_docker_test=self._holds_a_docker_test(node),
                                 short_lane=is_the_short_lane(node.workerinput.get("workerid", ""),
                                                              int(node.workerinput.get("workercount", 0))))
                self.workqueue.move_to_end(unit, last=False)
                super()._assign_work_unit(node)

            def _holds_a_docker_test(self, node) -> bool:
                return any(scope in self.docker_units and not all(done.values())
                           for scope, done in self.assigned_work.get(node, {}).items())

        return UnitScheduling(config, log)


def _starts_the_emulator(item) -> bool:
    module = getattr(item, "module", None)
    return module is not None and any("local.emulator" in (getattr(value, "__name__", None), getattr(value, "__module__", None))
                                      for value in vars(module).values())


def _work_unit(item) -> str | None:
    """The tests that share a world run as one unit: a package-scoped fixture's directory (tests/local/host_boxes_world:
    modules sharing one world), else the module of a module- or class-scoped one; None: a unit of its own."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    scopes = {definition.scope: definition for definitions_of_name in definitions.values() for definition in definitions_of_name}
    if "package" in scopes:
        return scopes["package"].baseid
    if "module" in scopes or "class" in scopes:
        return item.nodeid.split("::", 1)[0]
    return None


@pytest.fixture(scope="session")
def shipped(tmp_path_factory) -> Synthesis:
    """The app as shipped in cdk.json: synthesized once per run, the workers sharing it (tests only read it). A synth
    costs ~15 CPU-s (the app, and the jsii kernel it starts); a worker that only deploys the assembly starts no kernel."""
    return _synthesized_once_per_run(tmp_path_factory, "shipped", cdk_context())


@pytest.fixture(scope="session")
def box_world(tmp_path_factory) -> Synthesis:
    """The assembly the host boxes' worlds deploy (tests/helpers/synth.py `box_world_context`: the shipped app with a
    shorter host canary), synthesized once per run."""
    return _synthesized_once_per_run(tmp_path_factory, "box-world", box_world_context())


def _synthesized_once_per_run(tmp_path_factory, name: str, context: dict) -> Synthesis:
    """`context` synthesized by the first worker that asks (under a lock), read back by the others."""
    run_directory = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_directory = run_directory.parent  # the run's own directory, above each worker's
    outdir, templates = run_directory / f"{name}.cdk.out", run_directory / f"{name}.templates.json"
    with held(name):
        if templates.exists():
            return Synthesis(outdir=outdir, templates=json.loads(templates.read_text()))
        synthesis = synthesize(context, outdir)
        partial = templates.with_suffix(".partial")
        partial.write_text(json.dumps(synthesis.templates))
        partial.replace(templates)
        return synthesis


@pytest.fixture(scope="session")
def synth_variant(tmp_path_factory):
    """Synthesize the app with a changed `liftoff` context (each call costs ~0.5 s after the first)."""

    def build_variant(liftoff_context: dict) -> Synthesis:
        context = {**cdk_context(), "liftoff": liftoff_context}
        return synthesize(context, tmp_path_factory.mktemp("cdk.variant"))

    return build_variant
