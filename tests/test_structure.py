"""The package's shape, checked on its source: imports flow one way, the test helpers are a leaf, the retention
settings are written once, and every loop over samples goes through the harness's one loop."""
import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seats_analysis"
MODULES = {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))
           if path.stem not in ("__init__", "__main__", "_modidx")}


def _imported(node: ast.AST, module: str) -> list[str]:
    "The package modules one import statement of `module` names."
    if isinstance(node, ast.ImportFrom):
        if node.level == 1:
            base = node.module
        elif node.module and node.module.startswith("seats_analysis."):
            base = node.module.removeprefix("seats_analysis.")
        elif node.module == "seats_analysis":
            base = None
        else:
            return []
        names = [base] if base else [alias.name for alias in node.names]
        return [name.split(".")[0] for name in names if name.split(".")[0] in MODULES and name != module]
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[1] for alias in node.names
                if alias.name.startswith("seats_analysis.") and alias.name.split(".")[1] in MODULES]
    return []


def _module_level_imports(tree: ast.Module) -> list[ast.AST]:
    "Import statements run when the module is imported (at the top level, or under a top-level if/try)."
    found = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            found += [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def _import_graph() -> dict[str, set[str]]:
    "Each module and the package modules it imports when it is imported."
    return {module: {target for node in _module_level_imports(tree) for target in _imported(node, module)}
            for module, tree in MODULES.items()}


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    "The modules that importing `start` imports, directly or not."
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def _enclosing_functions(tree: ast.Module) -> dict[int, str]:
    "For each node id inside a function, the name of the outermost function holding it."
    owner = {}
    for top in ast.walk(tree):
        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(top):
                owner.setdefault(id(node), top.name)
    return owner


def test_module_imports_have_no_cycle():
    graphlib.TopologicalSorter(_import_graph()).prepare()  # raises CycleError naming the cycle


def test_imports_inside_functions_never_reach_up_except_deprecated_names():
    graph = _import_graph()
    upward = []
    for module, tree in MODULES.items():
        owner = _enclosing_functions(tree)
        for node in ast.walk(tree):
            if id(node) not in owner:
                continue
            for target in _imported(node, module):
                if module in _reaches(graph, target) and owner[id(node)] != "__getattr__":
                    upward.append(f"{module}.{owner[id(node)]} imports {target}")
    assert upward == []


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"testing"}))
def test_library_modules_do_not_import_the_test_helpers(module):
    assert not any("testing" in _imported(node, module) for node in ast.walk(MODULES[module]))


def test_the_retention_settings_are_written_once():
    written = [module for module, tree in MODULES.items() for node in ast.walk(tree)
               if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "R10" for k in node.keys)]
    assert written == ["harness"]


def test_every_loop_over_samples_is_the_harness_loop():
    "`run_batch` (one batch) is called in a loop nowhere but in `harness.run_samples`."
    in_loops = []
    for module, tree in MODULES.items():
        owner = _enclosing_functions(tree)
        for loop in ast.walk(tree):
            if not isinstance(loop, (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
                continue
            for node in ast.walk(loop):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "run_batch":
                    in_loops.append(f"{module}.{owner.get(id(loop), '<module>')}")
    assert in_loops == ["harness.run_samples"]


def test_seats_module_holds_seats_only():
    "The shared machinery (the run context, its record, the registry) lives in `run` and `methods`."
    defined = {node.name for node in MODULES["seats"].body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert defined == {"plan_notes", "SeatsSelectors", "seats"}, defined
