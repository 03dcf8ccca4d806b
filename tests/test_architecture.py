"""The package's import graph runs down the data flow (docs/ARCHITECTURE.md).

Every module has a layer; a module imports only from its own layer (inside its own
package) or from lower ones, and the module graph has no cycle. Imports inside functions
count too (a late import is still an import); ``if TYPE_CHECKING:`` blocks do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medground

PACKAGE = Path(medground.__file__).parent

#: Layer of each module (the longest matching prefix wins), lowest first. docs/ARCHITECTURE.md
#: draws the same picture.
LAYERS: dict[str, int] = {
    # Foundations: records, conventions and knowledge every stage shares.
    "medground._core": 0,
    "medground.geometry": 0,
    "medground.rle": 0,
    "medground.records": 0,
    "medground.boxes": 0,
    "medground.terms": 0,
    "medground.words": 0,
    "medground.phantoms": 0,
    "medground.runfolder": 1,
    "medground.anatomy": 1,
    # The dataset layer and the model clients.
    "medground.io": 2,
    "medground.backends": 2,
    # Scoring reads only records and box conventions: low enough for the dataset card
    # (the pipeline) to score the shortcut baselines with it; still an output below.
    "medground.evaluate": 2,
    "medground.settings": 3,
    # The stages, in the order a case flows through them.
    "medground.render": 4,
    "medground.anchors": 5,
    "medground.views": 6,
    "medground.cues": 7,
    "medground.facts": 8,
    "medground.volumes": 8,
    "medground.refer": 9,
    "medground.synth": 10,
    "medground.verify": 11,
    "medground.generate": 12,
    "medground.pipeline": 13,
    # Outputs read a run folder; they never import the pipeline or a stage.
    "medground.audit": 15,
    "medground.predict": 15,
    "medground.export": 15,
    "medground.browse": 15,
    "medground.cli": 16,
    "medground": 1,  # the package's __init__ re-exports the geometry API
}
OUTPUTS = ("medground.evaluate", "medground.predict", "medground.export", "medground.browse", "medground.audit")
#: What the outputs may import: the run folder, the records, the conventions, what medground
#: knows of anatomy and the dataset layer (to read a run's inputs again), never a stage.
OUTPUT_ALLOWED = (
    "medground.records",
    "medground.runfolder",
    "medground.boxes",
    "medground.backends",
    "medground.rle",
    "medground.terms",
    "medground.anatomy",
    "medground.io",
    "medground._core",
    "medground.geometry",
    "medground",
    *OUTPUTS,
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> tuple[str, int]:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return prefix, LAYERS[prefix]


def _resolve(name: str) -> str:
    """The module an import names (``from a.b import c``: ``a.b.c`` when that is a module)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.startswith("medground"))
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medground") and node.level == 0
        ):
            for alias in node.names:
                found.add(_resolve(f"{node.module}.{alias.name}"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


GRAPH = {module: _imports(path) - {module} for module, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        prefix, _ = _layer(module)
        assert prefix != "medground" or module == "medground", f"{module} has no layer in LAYERS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_data_flow(module: str) -> None:
    prefix, layer = _layer(module)
    for imported in sorted(GRAPH[module]):
        other_prefix, other_layer = _layer(imported)
        if imported == "medground" and module != "medground":
            continue  # importing a submodule runs the package's __init__; not a dependency on it
        assert other_layer < layer or (other_layer == layer and other_prefix == prefix), (
            f"{module} (layer {layer}) imports {imported} (layer {other_layer}): imports must run down the data flow"
        )
        if prefix in OUTPUTS:
            assert imported.startswith(OUTPUT_ALLOWED), f"output {module} imports {imported}"
    if prefix == "medground.io":
        assert all(_layer(m)[1] <= LAYERS["medground.io"] for m in GRAPH[module]), f"{module} imports a stage"


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(GRAPH.get(module, ())):
            if imported == "medground":
                continue
            if state.get(imported) == 1:
                cycle = path[path.index(imported) :] + [imported]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def _reachable(module: str) -> set[str]:
    seen: set[str] = set()
    stack = [module]
    while stack:
        for imported in GRAPH.get(stack.pop(), ()):
            if imported not in seen and imported != "medground":
                seen.add(imported)
                stack.append(imported)
    return seen


@pytest.mark.parametrize("module", ["medground.verify.measure", "medground.verify.rules"])
def test_the_verifier_measures_on_its_own(module: str) -> None:
    """The rules stage never reads the cues' code: what it checks a query against is
    measured again, so an error in a cue cannot pass by construction."""
    assert not {"medground.cues", "medground.facts", "medground.refer"} & _reachable(module)
