"""The packages' import directions and public seams, read from the source with `ast`.

    web -> workers (client API only) -> sieve        workers -> training -> sieve

`sieve` imports neither `web`, `workers` nor `training`; `web` reaches nothing of
`training` (nor torch), even through the workers modules it uses; and no module imports a
`_private` name from another module, in its own package or another. Every import counts:
at the top of a module, inside a function, or under `if TYPE_CHECKING:`. Benchmarks may
import any package's public names; tests may import anything.
"""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sieve", "training", "workers", "web", "bench", "sieve_client")
# Top-level project package -> the project packages it may import.
ALLOWED = {
    "sieve": set(),
    "training": {"sieve"},
    "workers": {"sieve", "training"},
    "web": {"sieve", "workers"},
    "sieve_client": set(),  # the installable client talks HTTP only
}
# The workers modules that are the web tier's client API: sending predictions and training
# runs by task name, and the Celery app built from the settings.
WEB_MAY_USE = {"workers.__init__", "workers.celery_app", "workers.client", "workers.runs"}
# Packages that load models: never imported by the web tier.
TORCH = ("torch", "torchvision", "triton")


@dataclass(frozen=True)
class Import:
    """One imported name: `module` (dotted, absolute) and, for `from m import n`, `name`."""

    module: str
    name: str | None
    line: int


def module_name(path: Path, root: Path) -> str:
    """`web.api.health` for web/api/health.py, `web.__init__` for web/__init__.py."""
    return ".".join(path.relative_to(root).with_suffix("").parts)


def imports(path: Path, root: Path) -> list[Import]:
    """Every import of a module, relative ones made absolute."""
    package = module_name(path, root).rsplit(".", 1)[0].split(".")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join(p for p in [*parent, base] if p)
            found += [Import(base, alias.name, node.lineno) for alias in node.names]
    return found


def private_names(path: Path, root: Path) -> list[str]:
    """`_names` a module takes from another module: `from x import _y`, or `m._y` on a
    module `m` bound by `import x.m as m` / `from x import m`. Dunders (`__version__`)
    are public."""
    own = module_name(path, root).removesuffix(".__init__")
    tree = ast.parse(path.read_text(), str(path))
    problems, modules = [], {}
    for item in imports(path, root):
        if item.module == own:
            continue
        if item.name and is_private(item.name):
            problems.append(f"{path.relative_to(root)}:{item.line} imports {item.name} "
                            f"from {item.module}")
    for node in ast.walk(tree):  # names bound to modules of other packages
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if isinstance(node, ast.Import):
                    target = alias.name
                    bound = alias.asname or alias.name
                else:
                    target, bound = f"{node.module}.{alias.name}", alias.asname or alias.name
                if getattr(node, "level", 0) == 0 and target != own:
                    modules[bound] = target
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and is_private(node.attr)
                and ast.unparse(node.value) in modules):
            problems.append(f"{path.relative_to(root)}:{node.lineno} uses "
                            f"{modules[ast.unparse(node.value)]}.{node.attr}")
    return problems


def is_private(name: str) -> bool:
    """`_x` is private; `__x__` is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def source_files(root: Path, packages=PACKAGES) -> list[Path]:
    """The Python files of the given top-level packages under `root`."""
    return [path for package in packages for path in sorted((root / package).rglob("*.py"))]


def project_module(name: str, root: Path) -> str | None:
    """The project module an imported name refers to, named like `module_name`, or None."""
    for candidate in (name, f"{name}.__init__"):
        if (root / (candidate.replace(".", "/") + ".py")).is_file():
            return candidate
    return None


def project_imports(path: Path, root: Path) -> set[str]:
    """The project modules a module imports (`from a import b` may name module a.b)."""
    found = set()
    for item in imports(path, root):
        names = [item.module] + ([f"{item.module}.{item.name}"] if item.name else [])
        found |= {m for m in map(lambda n: project_module(n, root), names) if m}
    return found


def direction_problems(root: Path, allowed=ALLOWED, web_may_use=WEB_MAY_USE) -> list[str]:
    """Imports against the allowed directions, a web module outside the client API, and
    anything of `training` or torch that the web tier reaches, directly or through others."""
    problems = []
    graph = {module_name(p, root): project_imports(p, root)
             for p in source_files(root, tuple(allowed))}
    for path in source_files(root, tuple(allowed)):
        own = module_name(path, root).split(".")[0]
        for item in imports(path, root):
            top = item.module.split(".")[0]
            where = f"{path.relative_to(root)}:{item.line}"
            if top in allowed and top != own and top not in allowed[own]:
                problems.append(f"{where}: {own} imports {item.module}")
            if own == "web" and top in TORCH:
                problems.append(f"{where}: web imports {item.module}")
        if own == "web":
            problems += [f"{path.relative_to(root)}: web imports {m}, not a client API module"
                         for m in sorted(graph[module_name(path, root)])
                         if m.startswith("workers.") and m not in web_may_use]
    reached, todo = set(), [m for m in graph if m.startswith("web.")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += sorted(graph.get(module, ()))
    problems += [f"the web tier reaches {m}" for m in sorted(reached) if m.startswith("training.")]
    return problems


def test_no_module_imports_a_private_name_of_another_module():
    problems = [p for path in source_files(ROOT) for p in private_names(path, ROOT)]
    assert not problems, "private names used across modules:\n" + "\n".join(problems)


def test_packages_import_in_the_allowed_directions():
    problems = direction_problems(ROOT)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_the_web_tier_reaches_only_the_client_api_of_the_workers():
    graph_of_web = {m for path in source_files(ROOT, ("web",))
                    for m in project_imports(path, ROOT)}
    assert {"workers.client", "sieve.store.__init__"} <= graph_of_web  # the scan sees them
    assert not {m for m in graph_of_web if m.startswith("workers.")} - WEB_MAY_USE


def write(root: Path, files: dict[str, str]) -> Path:
    """A small project tree under `root` for the checks above."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("source, found", [
    ("from sieve.config import _float\n", "imports _float from sieve.config"),
    ("from sieve import config\nconfig._float('X', 1)\n", "uses sieve.config._float"),
    ("import sieve.config as c\nc._float('X', 1)\n", "uses sieve.config._float"),
    ("from sieve.config import __doc__\n", None),
    ("from web.other import _helper\n", "imports _helper from web.other"),
    ("from web.page import _itself\n", None),  # the module's own names
])
def test_the_private_name_check_finds_each_form(tmp_path, source, found):
    root = write(tmp_path, {"sieve/__init__.py": "", "sieve/config.py": "def _float(): ...\n",
                            "web/__init__.py": "", "web/other.py": "", "web/page.py": source})
    problems = private_names(root / "web" / "page.py", root)
    if found is None:
        assert problems == []
    else:
        assert len(problems) == 1 and found in problems[0], problems


@pytest.mark.parametrize("name, source, found", [
    ("sieve/cfg.py", "from training.data import load\n", "sieve imports training.data"),
    ("sieve/cfg.py", "def f():\n    import web\n", "sieve imports web"),
    ("training/data.py", "from workers import client\n", "training imports workers"),
    ("web/page.py", "import torch\n", "web imports torch"),
    ("web/page.py", "from training.data import load\n", "web imports training.data"),
    ("web/page.py", "from workers.tasks import go\n", "not a client API module"),
    ("web/page.py", "from workers.client import send\n", "the web tier reaches training"),
    ("workers/tasks.py", "from training.data import load\n", None),
])
def test_the_direction_check_finds_each_kind(tmp_path, name, source, found):
    files = {f"{p}/__init__.py": "" for p in ALLOWED}
    files |= {"training/data.py": "load = 1\n", "workers/tasks.py": "go = 1\n",
              "workers/client.py": "from training.data import load\nsend = 1\n"}
    problems = direction_problems(write(tmp_path, files | {name: source}))
    if found is None:
        assert problems == []
    else:
        assert any(found in p for p in problems), problems
