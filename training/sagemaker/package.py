"""Build SageMaker archives from the project's own source and the model store.

`model.tar.gz` (what a SageMaker model serves), laid out for the PyTorch container:

    classifier.pt, classifier.json     the weights and model card, at the top
    filter.pt, filter.json             only when the filter runs in front
    sieve-package.json                 what is inside: models, versions, where from
    code/inference.py                  model_fn, input_fn, predict_fn, output_fn
    code/requirements.txt              what the container must add (pinned like ours)
    code/training/..., code/sieve/...  the modules inference imports, preprocessing included

`sourcedir.tar.gz` (what a training job runs), unpacked by the container into its code
folder, which runs `python sieve_train.py --key value ...` there:

    sieve_train.py                     the entry script (training/sagemaker/entry.py)
    requirements.txt                   what the container must add (pinned like ours)
    training/..., sieve/...            the modules the entry script imports

Which modules go in is worked out from the imports: starting from the entry file (the
handler, the entry script), every import of a project module, at the top of a module or
inside a function, is followed, and the packages those modules live in come along. So the
container runs exactly the preprocessing the workers run; nothing is listed by hand.
"""

import ast
import hashlib
import importlib.metadata
import io
import json
import re
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sieve.config import ROOT
from sieve.store import CARD, Store

PACKAGE_INFO = "sieve-package.json"
HANDLER = Path(__file__).with_name("inference.py")
TRAINING_ENTRY = "sieve_train.py"
TRAINING_ENTRY_SOURCE = Path(__file__).with_name("entry.py")
# What the AWS PyTorch containers already have (their toolkits need boto3): never
# reinstalled over theirs.
IN_CONTAINER = {"torch", "torchvision", "numpy", "boto3", "botocore", "s3transfer"}


def module_closure(entry: Path, root: Path = ROOT) -> list[str]:
    """The project modules (files under `root`) that the file `entry` needs: those it
    imports, those they import, and so on, with their packages' `__init__` modules.
    Names are dotted (`training.predict`, `training.__init__`), sorted."""
    seen: set[str] = set()
    todo = _project_imports(entry, _package_of(entry, root), root)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, root)
        todo += _project_imports(path, _package_of(path, root), root)
        dotted = name.removesuffix(".__init__")
        if "." in dotted:  # importing a module runs its package's __init__ first
            todo.append(dotted.rsplit(".", 1)[0] + ".__init__")
    return sorted(seen)


def module_file(name: str, root: Path = ROOT) -> Path:
    """The source file of a module named as `module_closure` names it."""
    return root / (name.replace(".", "/") + ".py")


def _package_of(path: Path, root: Path) -> str | None:
    """The dotted package a file under `root` belongs to (None at the top or outside)."""
    try:
        parts = path.resolve().parent.relative_to(root.resolve()).parts
    except ValueError:
        return None
    return ".".join(parts) or None


def _imports(path: Path, package: str | None) -> list[str]:
    """Absolute names a module imports anywhere in its code (functions included), except
    under `if TYPE_CHECKING:`, which never runs. `from a import b` gives `a` and `a.b`."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                parent = (package or "").split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(p for p in [*parent, base] if p)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return [n for n in names if n]


def _project_imports(path: Path, package: str | None, root: Path) -> list[str]:
    """The project modules among a module's imports, named as `module_closure` names them
    (a package by its `__init__` module)."""
    found = []
    for name in _imports(path, package):
        if module_file(name, root).is_file():
            found.append(name)
        elif module_file(f"{name}.__init__", root).is_file():
            found.append(f"{name}.__init__")
    return found


def requirements(entry: Path, modules: list[str], root: Path = ROOT) -> list[str]:
    """Pinned requirements (from requirements.txt) of the third-party packages that the
    entry file and the modules import, without what the container already has."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (root / "requirements.txt").read_text(),
                           re.MULTILINE))
    pins = {_canonical(name): version for name, version in pins.items()}
    distributions = importlib.metadata.packages_distributions()
    wanted = set()
    for path in (entry, *(module_file(m, root) for m in modules)):
        for name in _imports(path, _package_of(path, root)):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or module_file(top + ".__init__", root).is_file():
                continue
            for distribution in map(_canonical, distributions.get(top, [])):
                if distribution in pins and distribution not in IN_CONTAINER:
                    wanted.add(distribution)
    return sorted(f"{d}=={pins[d]}" for d in wanted)


def _canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a file from memory, with a fixed time and mode (reproducible archives)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    archive.addfile(info, io.BytesIO(data))


def _add_modules(archive: tarfile.TarFile, modules: list[str], prefix: str) -> None:
    """Add the modules' source files under `prefix`."""
    for module in modules:
        relative = module.replace(".", "/") + ".py"
        _add_bytes(archive, f"{prefix}{relative}", (ROOT / relative).read_bytes())


def build_model_archive(store: Store, name: str, ref: str | None, output: Path,
                        filter_ref: str | None = None, with_filter: bool = False) -> dict:
    """Write `model.tar.gz` for a model version (and the filter's when asked); returns the
    package description that goes in as sieve-package.json."""
    models = {"classifier": (name, store.resolve(name, ref))}
    if with_filter:
        models["filter"] = ("filter", store.resolve("filter", filter_ref))
    description = {"built": datetime.now(UTC).isoformat(timespec="seconds"),
                   "store": store.url, "models": {}}
    modules = module_closure(HANDLER)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(output, "w:gz") as archive:
        for role, (model, version) in models.items():
            if version is None:
                raise FileNotFoundError(f"{model} has no published version in {store.url}")
            folder = store.open(model, version)
            archive.add(folder / "model.pt", f"{role}.pt")
            archive.add(folder / CARD, f"{role}.json")
            description["models"][role] = {"name": model, "version": version}
        _add_bytes(archive, PACKAGE_INFO, json.dumps(description, indent=2).encode())
        _add_bytes(archive, "code/inference.py", HANDLER.read_bytes())
        _add_bytes(archive, "code/requirements.txt",
                   "".join(f"{r}\n" for r in requirements(HANDLER, modules)).encode())
        _add_modules(archive, modules, "code/")
    return description


def build_source_archive(output: Path) -> list[str]:
    """Write `sourcedir.tar.gz` for a training job; returns the modules packed."""
    modules = module_closure(TRAINING_ENTRY_SOURCE)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(output, "w:gz") as archive:
        _add_modules(archive, modules, "")
        _add_bytes(archive, TRAINING_ENTRY, TRAINING_ENTRY_SOURCE.read_bytes())
        _add_bytes(archive, "requirements.txt", "".join(
            f"{r}\n" for r in requirements(TRAINING_ENTRY_SOURCE, modules)).encode())
    return modules


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def safe_extract(archive: Path, target: Path) -> Path:
    """Unpack a tar.gz, refusing members that would land outside `target` or are links."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = (target / member.name).resolve()
            if not path.is_relative_to(target.resolve()) or member.issym() or member.islnk():
                raise ValueError(f"{archive}: unsafe member {member.name!r}")
        tar.extractall(target, filter="data" if hasattr(tarfile, "data_filter") else None)
    return target


def temporary_archive(prefix: str) -> Path:
    """A fresh path for an archive in a new temporary folder."""
    return Path(tempfile.mkdtemp(prefix=prefix)) / "model.tar.gz"
