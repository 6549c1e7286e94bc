"""The package's imports point one way: each layer imports only the layers below it."""
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
