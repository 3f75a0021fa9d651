"""The package's shape, checked on its source: imports flow one way (inside functions too), no name has two
doors (no deprecated name, alias or re-export) and no public name two meanings (defined in two modules), the test
helpers are a leaf, the retention settings are written once, and every loop over samples goes through the harness's
one loop."""
import ast
import graphlib
import json
import re
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


def _import_graph() -> dict[str, set[str]]:
    "Each module and the package modules it imports anywhere in its file: at the top, under an if or try, in a function."
    return {module: {target for node in ast.walk(tree) for target in _imported(node, module)}
            for module, tree in MODULES.items()}


def _enclosing_functions(tree: ast.Module) -> dict[int, str]:
    "For each node id inside a function, the name of the outermost function holding it."
    owner = {}
    for top in ast.walk(tree):
        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(top):
                owner.setdefault(id(node), top.name)
    return owner


def test_module_imports_have_no_cycle():
    "Counting imports inside functions too: a lazy import that reaches back up is a cycle all the same."
    graphlib.TopologicalSorter(_import_graph()).prepare()  # raises CycleError naming the cycle


def test_the_graph_counts_imports_inside_functions():
    "The graph sees an import written only inside a function (`cli._demo` imports `demo` when it runs)."
    top_level = {node for node in MODULES["cli"].body if isinstance(node, (ast.Import, ast.ImportFrom))}
    assert "demo" not in {t for node in top_level for t in _imported(node, "cli")}
    assert "demo" in _import_graph()["cli"]


def _notebook_of_module() -> dict[str, str]:
    "Each module and the notebook that exports it (the stem of the notebook whose `#| default_exp` names it)."
    found = {}
    for notebook in sorted((PACKAGE.parent / "nbs").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            match = re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(cell["source"]), re.M)
            if match:
                found.setdefault(match.group(1), notebook.stem)
    return found


def test_every_module_has_its_notebook():
    assert set(MODULES) <= set(_notebook_of_module())


def _later_imports(graph: dict[str, set[str]], notebook: dict[str, str]) -> list[str]:
    "Each import of a module whose notebook is numbered after the importer's (stems compare as strings: 06 < 06a < 07)."
    return sorted(f"{notebook[module]} ({module}) imports {notebook[target]} ({target})"
                  for module, targets in graph.items() for target in targets if notebook[target] > notebook[module])


def test_notebooks_are_numbered_in_the_order_the_data_flows():
    "A notebook reads only what earlier notebooks define: no module imports the module of a later-numbered notebook."
    later = _later_imports(_import_graph(), _notebook_of_module())
    assert not later, later


def test_the_flow_order_check_sees_an_import_of_a_later_notebook():
    "`run` imports `engine`; were `engine` to import `run` back, the check would name that arrow."
    graph, notebook = _import_graph(), _notebook_of_module()
    assert "engine" in graph["run"]
    reversed_arrow = {**graph, "engine": graph["engine"] | {"run"}}
    assert _later_imports(reversed_arrow, notebook) == [f"{notebook['engine']} (engine) imports {notebook['run']} (run)"]


def _exported_cells(notebook: Path) -> list[str]:
    return [source for cell in json.loads(notebook.read_text())["cells"]
            if cell["cell_type"] == "code" and re.search(r"^#\|\s*export", source := "".join(cell["source"]), re.M)]


def test_exported_definition_cells_are_short():
    "Definition, example and check side by side: no exported cell of a notebook is over 60 lines."
    long = [f"{notebook.name}: a cell of {len(source.splitlines())} lines starting {source.splitlines()[1][:60]!r}"
            for notebook in sorted((PACKAGE.parent / "nbs").glob("*.ipynb")) for source in _exported_cells(notebook)
            if len(source.splitlines()) > 60]
    assert not long, long


def test_long_modules_say_why_in_their_notebook():
    "A module over 500 lines has its notebook say why it is one module (\"This is one of the longer modules ... because\")."
    notebook = _notebook_of_module()
    unexplained = []
    for module in MODULES:
        lines = len((PACKAGE / f"{module}.py").read_text().splitlines())
        prose = " ".join("".join(cell["source"]) for cell in json.loads(
            (PACKAGE.parent / "nbs" / f"{notebook[module]}.ipynb").read_text())["cells"] if cell["cell_type"] == "markdown")
        if lines > 500 and not re.search(r"one of the longer modules \(some \d+ lines\) because", prose):
            unexplained.append(f"{module}.py ({lines} lines, {notebook[module]})")
    assert not unexplained, unexplained


# (module, function) that may warn about an older results file on disk (data, not API); none needs to now
READS_OLDER_RESULTS: set[tuple[str, str]] = set()


def test_no_deprecation_or_future_warnings():
    "No deprecated name, alias or argument: the package never raises DeprecationWarning or FutureWarning."
    places = []
    for module, tree in MODULES.items():
        owner = _enclosing_functions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in ("DeprecationWarning", "FutureWarning"):
                places.append((module, owner.get(id(node), "<module>")))
    assert set(places) <= READS_OLDER_RESULTS, places


def test_modules_have_no_module_getattr():
    "A module-level `__getattr__` only serves names that are not there: every name is defined where it is imported from."
    assert [module for module, tree in MODULES.items()
            if any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body)] == []


def _public(tree: ast.Module) -> list[str]:
    "The names a module lists in its `__all__`."
    return next((ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "__all__" for t in node.targets)), [])


def test_public_names_are_defined_in_their_module():
    "What a module lists in `__all__` it defines itself: no name re-exported from another module."
    reexported = []
    for module, tree in MODULES.items():
        defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        defined |= {target.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for target in ast.walk(node.targets[0] if isinstance(node, ast.Assign) else node.target)
                    if isinstance(target, ast.Name)}
        reexported += [f"{module}.{name}" for name in _public(tree) if name not in defined]
    assert reexported == []


def test_no_public_name_is_defined_in_two_modules():
    "A public name means one thing: no two modules list the same name in their `__all__`."
    owners = {}
    for module, tree in MODULES.items():
        for name in _public(tree):
            owners.setdefault(name, []).append(module)
    assert {name: modules for name, modules in owners.items() if len(modules) > 1} == {}



@pytest.mark.parametrize("module", sorted(set(MODULES) - {"testing"}))
def test_library_modules_do_not_import_the_test_helpers(module):
    assert not any("testing" in _imported(node, module) for node in ast.walk(MODULES[module]))


def test_the_retention_settings_are_written_once():
    written = [module for module, tree in MODULES.items() for node in ast.walk(tree)
               if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "R10" for k in node.keys)]
    assert written == ["catalog"]


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
    "The shared machinery (the run context, its record, the registry) lives in `run` and `registry`."
    def method(node) -> bool:
        "A method of `SeatsSelectors` written in its own cell with fastcore's `@patch`."
        return (any(ast.unparse(d).startswith("patch") for d in node.decorator_list)
                and ast.unparse(node.args.args[0].annotation) == "SeatsSelectors")
    defined = {node.name for node in MODULES["seats"].body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not method(node)}
    assert defined == {"plan_notes", "SeatsSelectors", "seats", "_windowed_count", "seats_token_plan"}, defined
