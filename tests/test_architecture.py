"""The layer order csrc → model → dataset → engine → tools, no import cycles, and module sizes,
checked by scanning the imports (AST) of every module, function-body imports included."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: A package may import only packages of a lower rank (and itself); tools/ are leaves.
LAYERS = {"model": 0, "dataset": 1, "engine": 2, "tools": 3}
MAX_MODULE_LINES = 700
MAX_TOOL_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in LAYERS for p in sorted((ROOT / package).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (its longest existing prefix), or None if external."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports, anywhere in its body."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for name in names:
            target = resolve(name, modules)
            # a module's own packages are initialised before it, whatever it imports
            if target is not None and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def test_resolve_and_scan_find_relative_and_absolute_imports(tmp_path):
    modules = {"model": tmp_path / "model/__init__.py", "model.a": tmp_path / "model/a.py",
               "model.sub": tmp_path / "model/sub/__init__.py", "model.sub.b": tmp_path / "model/sub/b.py",
               "model.sub.c": tmp_path / "model/sub/c.py"}
    for p in modules.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    modules["model.sub.b"].write_text("from .. import a\nfrom . import c\ndef f():\n    import engine.x\n"
                                      "    from model.sub import b as _b\n")
    # the module's own packages (model, model.sub) and external modules (engine.x here) are not edges
    assert imports_of("model.sub.b", modules["model.sub.b"], modules) == {"model.a", "model.sub.c"}
    assert resolve("model.a.function", modules) == "model.a"
    assert resolve("torch.nn", modules) is None


def test_no_package_imports_a_higher_layer_and_no_tool_imports_another_tool():
    bad = []
    for module, targets in import_graph().items():
        layer = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if LAYERS[other] > LAYERS[layer]:
                bad.append(f"{module} imports {target} ({other} is above {layer})")
            elif layer == "tools" and other == "tools" and target != "tools":
                bad.append(f"{module} imports the tool {target}")
    assert not bad, "\n".join(sorted(bad))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_module_sizes(package):
    limit = MAX_TOOL_LINES if package == "tools" else MAX_MODULE_LINES
    too_long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
                if (n := len(p.read_text().splitlines())) > limit}
    assert not too_long, f"modules over {limit} lines: {too_long}"
