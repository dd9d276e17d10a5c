"""Each subpackage of rnnlab imports on its own, and the packages import each other in one direction only."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rnnlab

ROOT = Path(rnnlab.__file__).parent
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())


def package_imports() -> dict[str, set[str]]:
    """{package or top-level module of rnnlab: the others it imports (anywhere in its files, lazy imports too)}."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        source, here = parts[0], ["rnnlab", *parts[:-1]] if parts[-1] != "__init__" else ["rnnlab", *parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                continue
            for name in names:
                target = name.split(".")
                if target[0] == "rnnlab" and len(target) > 1 and target[1] != source:
                    edges.setdefault(source, set()).add(target[1])
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    return next((found for node in sorted(edges) if node not in state and (found := visit(node, [node]))), None)


def test_no_two_packages_of_rnnlab_import_each_other_even_through_others():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check finds a cycle
    edges = package_imports()
    assert cycle(edges) is None, f"rnnlab's packages import each other in a circle: {' -> '.join(cycle(edges))}"


def test_the_data_layer_imports_no_model():
    assert "models" not in package_imports().get("data", set())


@pytest.mark.slow  # a fresh interpreter imports torch: ~5 s each on a busy 2-core machine
@pytest.mark.parametrize("package", PACKAGES)
def test_each_subpackage_imports_alone_in_a_fresh_interpreter(package):
    done = subprocess.run([sys.executable, "-c", f"import rnnlab.{package}"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
