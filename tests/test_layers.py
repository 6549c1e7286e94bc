"""The package's imports point one way: each layer imports only the layers below it, and no
module imports itself through others (no import circle, lazy imports included)."""
import ast
import pathlib

import jaxomrl

# Bottom to top. The package root's modules (types, errors, io) are below every layer.
LAYERS = ["envs", "data", "nets", "losses", "learners", "eval", "algos", "experiment"]
ROOT = pathlib.Path(jaxomrl.__file__).parent


def layer_of(module: str) -> int:
    """Layer index of a ``jaxomrl.*`` module (-1: the package root's own modules)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else -1


def imported_modules(path: pathlib.Path):
    """Every ``jaxomrl`` module a file imports, at any depth (lazy imports included)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("jaxomrl"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxomrl"):
            if node.module == "jaxomrl":   # ``from jaxomrl import envs``: the names are modules
                yield from (f"jaxomrl.{a.name}" for a in node.names)
            else:
                yield node.module


def upward_imports(root: pathlib.Path = ROOT):
    out = []
    for path in sorted(root.rglob("*.py")):
        module = "jaxomrl." + ".".join(path.relative_to(root).with_suffix("").parts)
        for target in imported_modules(path):
            if layer_of(target) > layer_of(module):
                out.append(f"{module} imports {target}")
    return out


def test_every_layer_imports_only_layers_below_it():
    assert upward_imports() == []


def test_the_walk_sees_upward_imports_lazy_or_not(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.py").write_text(
        "from jaxomrl.envs import base\n"            # downward: fine
        "def f():\n    from jaxomrl.learners import sac\n")
    (tmp_path / "io.py").write_text("from jaxomrl import nets\n")
    assert upward_imports(tmp_path) == ["jaxomrl.data.x imports jaxomrl.learners",
                                        "jaxomrl.io imports jaxomrl.nets"]


def import_graph(root: pathlib.Path = ROOT):
    """``{module: modules of the package it imports}`` (lazy imports included; ``from a.b import
    c`` is the module ``a.b.c`` where that is a file, else ``a.b``)."""
    files = {}
    for path in root.rglob("*.py"):
        parts = ("jaxomrl",) + path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files
                               else node.module for a in node.names)
        graph[module] = sorted(t for t in targets if t in files and t != module)
    return graph


def import_circles(graph):
    """The import circles of ``graph``, each as the path that closes it (depth-first search)."""
    state, path, out = {}, [], []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for t in graph[m]:
            if state.get(t) == "open":
                out.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m)
    return out


def test_no_import_circle_in_the_package():
    assert import_circles(import_graph()) == []


def test_the_circle_search_sees_lazy_circles(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("")
    (tmp_path / "data" / "a.py").write_text("from jaxomrl.data.b import f\n")
    (tmp_path / "data" / "b.py").write_text("def f():\n    from jaxomrl.data import a\n")
    assert import_circles(import_graph(tmp_path)) == [
        ["jaxomrl.data.a", "jaxomrl.data.b", "jaxomrl.data.a"]]


def test_no_dates_in_the_package_comments():
    """Code comments state rules and cite sources; dates and what was measured on them belong
    in the results pages and commit bodies."""
    import re
    import tokenize
    date = re.compile(r"\b20\d\d-[01]\d(-[0-3]\d)?\b|\b(until|since|as of) 20\d\d\b")
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        with tokenize.open(path) as f:
            for tok in tokenize.generate_tokens(f.readline):
                if tok.type in (tokenize.COMMENT, tokenize.STRING) and date.search(tok.string):
                    found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}")
    assert not found, found
