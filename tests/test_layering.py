"""The package's import graph is layered: every `import` in anyref (at module level and inside functions), read with
`ast`, points down; the model never reaches the training package, and `tokens` and `data` do not import each other."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "anyref"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module name an `import` anywhere in the file may load (for `from m import x`: both m and m.x)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `..` drops one package per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


IMPORTS = {module_name(path): imported_names(path) for path in sorted(PACKAGE.rglob("*.py"))}
MODULES = set(IMPORTS)


def internal(module: str) -> set[str]:
    """The anyref modules `module` imports, each with the subpackages it runs on the way (not the root package)."""
    found = set()
    for target in IMPORTS[module]:
        parts = target.split(".")
        found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & MODULES
    return found - {module}


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in internal(todo.pop()) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def layer(module: str) -> str:
    """A top-level module, or a whole subpackage (anyref.data, anyref.pretrain, ...)."""
    return ".".join(module.split(".")[:2])


def test_the_parser_sees_module_and_function_level_imports():
    assert "anyref.tokens" in internal("anyref.data.tasks")  # module level, relative
    assert "anyref.weights" in internal("anyref.model")  # inside build_audio


def test_the_model_reaches_nothing_in_the_training_package():
    assert not {m for m in reachable("anyref.model") if layer(m) == "anyref.pretrain"}


def test_tokens_and_data_do_not_import_each_other():
    assert not {m for m in reachable("anyref.tokens") if layer(m) == "anyref.data"}
    assert "anyref.tokens" in internal("anyref.data.words")  # the word tokenizer sits above tokens


def test_config_imports_no_component():
    assert internal("anyref.config") <= {"anyref.errors", "anyref.schema"}


def test_nothing_in_anyref_imports_research():
    research = {"research", *(path.stem for path in (ROOT / "research").glob("*.py"))}  # its scripts import siblings
    assert not {(m, name) for m, names in IMPORTS.items() for name in names if name.split(".")[0] in research}


def test_layers_form_no_cycle():
    edges = {a: set() for a in map(layer, MODULES)}
    for module in MODULES:
        edges[layer(module)] |= {layer(t) for t in internal(module)} - {layer(module)}
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(node):] + [node])}")
        if node not in done:
            path.append(node)
            for target in sorted(edges[node]):
                visit(target)
            path.pop()
            done.add(node)

    for node in sorted(edges):
        visit(node)
