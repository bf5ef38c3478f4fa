"""The product's import rules, read from the source with `ast` (lazy imports inside functions included):
the product never imports the harness, and `release/` imports in one direction only: its folders are its
layers (release/__init__.py), each importing only from the layers before it."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.synth import REPO

PRODUCT = [REPO / "app.py", *(p for folder in ("config", "stacks", "components", "release", "pipeline")
                               for p in sorted((REPO / folder).rglob("*.py")))]
HARNESS = ("local", "bench")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (top level, functions, try blocks), made absolute."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1]) if path.is_relative_to(REPO) else ""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from release import flow` imports release.flows.flow
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def test_the_product_modules_are_the_ones_the_rule_names():
    # Guards the guard: an empty list would pass everything below.
    relative = {str(p.relative_to(REPO)) for p in PRODUCT}
    assert {"app.py", "config/__init__.py", "release/cli.py", "release/flows/flow.py", "release/adapters/runtime.py"} <= relative
    assert any(name.startswith("stacks/") for name in relative) and any(name.startswith("components/") for name in relative)


def test_no_product_module_imports_the_harness():
    offenders = {str(path.relative_to(REPO)): sorted(name for name in imported_modules(path)
                                                     if name.split(".")[0] in HARNESS)
                 for path in PRODUCT}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_checker_sees_a_lazy_harness_import(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def later():\n    from local.runtime import EmulatedRuntime\n    import bench.report\n")
    assert {"local.runtime", "bench.report"} <= imported_modules(source)


def release_modules() -> dict[str, Path]:
    """Every module of release/, by its dotted name (packages' __init__ left out: they hold only a docstring)."""
    return {".".join(p.relative_to(REPO).with_suffix("").parts): p
            for p in sorted((REPO / "release").rglob("*.py")) if p.stem != "__init__"}


def release_graph() -> dict[str, set[str]]:
    modules = release_modules()
    return {name: {other for other in imported_modules(path) if other in modules and other != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each once, as the path that closes it (depth-first, white/grey/black)."""
    found, state, path = [], {}, []

    def visit(node: str) -> None:
        state[node] = "grey"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "grey":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "black"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_release_has_no_import_cycle():
    graph = release_graph()
    assert "release.flows.schema_flow" in graph["release.flows.flow"]  # the one direction the flows take
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


# release/'s layers, in order: a module may import its own layer and the ones before it. The root floor is the CLI.
LAYERS = ("pure", "adapters", "flows", "cli")
ROOT_FLOOR = {"release.cli", "release.__main__"}
# What a decision must not touch: AWS, the clock, the process, files, the network.
NOT_PURE = {"boto3", "botocore", "time", "os", "sys", "signal", "threading", "subprocess", "socket", "select",
            "urllib", "http", "pathlib", "io", "shutil", "tempfile", "random", "uuid", "asyncio"}


def layer(module: str) -> str:
    folder = module.split(".")[1]
    return folder if folder in LAYERS[:-1] else "cli"


def against_the_order(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((module, other) for module, imported in graph.items() for other in imported
                  if LAYERS.index(layer(other)) > LAYERS.index(layer(module)))


def impure_imports(path: Path) -> set[str]:
    return {name for name in imported_modules(path) if name.split(".")[0] in NOT_PURE}


def test_every_release_module_lives_in_a_layer():
    modules = release_modules()
    assert {name for name in modules if name.count(".") == 1} == ROOT_FLOOR
    assert {layer(name) for name in modules} == set(LAYERS)  # every layer holds something: the rule is not vacuous
    assert {"release.pure.decisions", "release.adapters.aws", "release.flows.flow"} <= set(modules)


def test_each_layer_imports_only_the_layers_before_it():
    graph = release_graph()
    assert "release.pure.decisions" in graph["release.adapters.ledger"]  # the graph sees the folders' imports
    assert against_the_order(graph) == []


def test_the_decisions_touch_no_aws_clock_or_io():
    pure = {name: path for name, path in release_modules().items() if layer(name) == "pure"}
    assert len(pure) >= 5
    assert {name: sorted(impure_imports(path)) for name, path in pure.items() if impure_imports(path)} == {}


def test_the_layer_checks_see_a_violation(tmp_path):
    assert against_the_order({"release.pure.a": {"release.adapters.b"}, "release.adapters.b": {"release.pure.a"},
                              "release.flows.c": {"release.cli"}}) == [("release.flows.c", "release.cli"),
                                                                       ("release.pure.a", "release.adapters.b")]
    source = tmp_path / "probe.py"
    source.write_text("import json\nfrom botocore.exceptions import ClientError\ndef later():\n    import time\n")
    assert impure_imports(source) == {"botocore.exceptions", "botocore.exceptions.ClientError", "time"}
