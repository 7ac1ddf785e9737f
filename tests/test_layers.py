"""The package's layers: every module imports, nothing imports a layer above its own, and no two modules
import each other at load time (a cycle)."""
import ast
import subprocess
import sys
from pathlib import Path

import fastmotion
import fastmotion.bench
import fastmotion.kernels
import fastmotion.train

PACKAGE = Path(fastmotion.__file__).parent
SIBLINGS = {name: Path(getattr(fastmotion, name).__file__).parent for name in ("train", "kernels", "bench")}
# a module may import modules of its own rank and below ("library": checkpoint, errors, the package itself)
RANK = {"ops": 0, "kernels": 0, "motion": 1, "data": 2, "metrics": 3, "models": 3, "losses": 3, "diffusion": 3,
        "render": 3, "bench": 5, "library": 1, "pipelines": 4, "train": 5, "cli": 6}


def modules() -> dict[str, Path]:
    found = {}
    roots = [(PACKAGE, "fastmotion")] + [(path, f"fastmotion.{name}") for name, path in SIBLINGS.items()]
    for root, prefix in roots:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if (root == PACKAGE and parts[0] in SIBLINGS) or parts[-1].startswith("test_"):
                continue
            name = ".".join((prefix, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def layer(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else "library"
    return part if part in RANK else "library"  # checkpoint, errors, render and the package itself


def imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m == "fastmotion" or m.startswith("fastmotion.")}


def test_no_module_imports_a_layer_above_its_own():
    found = modules()
    assert "fastmotion.cli.lift" in found and "fastmotion.train.loop" in found and "fastmotion.ops.rvq" in found
    wrong = []
    for name, path in found.items():
        for target in imports(name, path, top_level_only=False):
            if target in found and target != "fastmotion" and RANK[layer(target)] > RANK[layer(name)]:
                wrong.append(f"{name} ({layer(name)}) imports {target} ({layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_at_load_time():
    found = modules()
    graph = {n: {t for t in imports(n, p, top_level_only=True) if t in found and t != n} for n, p in found.items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):  # a package's own __init__ is no cycle
                raise AssertionError("import cycle: " + " -> ".join(trail + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_every_module_imports_in_a_fresh_interpreter():
    names = [n for n in modules() if n != "fastmotion.cli.__main__"]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
