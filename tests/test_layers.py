"""The package's imports flow one way (CONTRIBUTING.md, "The layers"): no module imports one of a layer
above its own, and no modules import each other in a cycle."""
import pkgutil

import boomerang
from boomerang import provenance

LAYERS = [  # lowest first; a module's layer is that of the longest prefix that names it
    ("config", "io", "device", "machine", "progress", "provenance", "artefacts", "allocator", "core.orders"),
    ("core",),
    ("sources",),
    ("family",),
    ("distill", "measure"),
    ("pipeline", "export"),
    ("standins",),  # apart: used by tests and scripts only
]


def layer(module: str) -> int:
    name = module.removeprefix("boomerang.")
    ranks = [(len(prefix), rank) for rank, prefixes in enumerate(LAYERS) for prefix in prefixes
             if name == prefix or name.startswith(prefix + ".")]
    assert ranks, f"{module} is in no layer: add it to LAYERS and CONTRIBUTING.md"
    return max(ranks)[1]


def import_graph() -> dict[str, set[str]]:
    modules = [m.name for m in pkgutil.walk_packages(boomerang.__path__, "boomerang.")]
    return {m: provenance._imports(m) - {m, "boomerang"} for m in modules}


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{m} -> {i}" for m, imported in import_graph().items() for i in imported if layer(i) > layer(m)]
    assert upward == []


def test_no_import_cycle():
    graph, state, cycles = import_graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                cycles.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_pipeline_code_imports_the_stand_ins():
    assert [m for m, imported in import_graph().items() if "boomerang.standins" in imported] == []
