"""Build SageMaker archives from the project's own source and the model store.

`model.tar.gz` (what a SageMaker model serves), laid out for the PyTorch container:

    classifier.pt, classifier.json     the weights and model card, at the top
    filter.pt, filter.json             only when the filter runs in front
    sieve-package.json                 what is inside: models, versions, where from
    code/inference.py                  model_fn, input_fn, predict_fn, output_fn
    code/requirements.txt              what the container must add (pinned like ours)
    code/training/...                  the modules inference imports, preprocessing included

`sourcedir.tar.gz` (what a training job runs): the whole `training` package, an entry
script that runs `python -m training.train`, and its requirements.

Both are made from the files of this checkout at build time, so the container runs exactly
the preprocessing the workers run; nothing is copied by hand.
"""

import ast
import hashlib
import io
import json
import re
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from training.config import ROOT
from training.store import CARD, Store

PACKAGE_INFO = "sieve-package.json"
HANDLER = Path(__file__).with_name("inference.py")
# Import name -> distribution name, for the packages the container may lack.
DISTRIBUTIONS = {"PIL": "pillow", "dotenv": "python-dotenv", "tqdm": "tqdm",
                 "matplotlib": "matplotlib", "numpy": "numpy"}
# What the AWS PyTorch containers already have: never reinstalled over theirs.
IN_CONTAINER = {"torch", "torchvision", "numpy"}
TRAINING_ENTRY = "sieve_train.py"
TRAINING_ENTRY_SOURCE = '''"""SageMaker training-job entry point: runs `python -m training.train`
with the job's hyperparameters as options (see training/sagemaker/environment.py)."""

import runpy

sys.argv[0] = "training.train"
runpy.run_module("training.train", run_name="__main__", alter_sys=True)
'''


def module_closure(start: str, root: Path = ROOT) -> list[str]:
    """Modules of the project that `start` imports at module level, directly or not."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in _project_imports(root / (name.replace(".", "/") + ".py"), root):
            todo.append(imported)
    package_inits = {n.rsplit(".", 1)[0] + ".__init__" for n in seen if "." in n}
    return sorted(seen | package_inits)


def _top_level_imports(path: Path) -> list[str]:
    """Absolute module names imported by the module's top-level statements."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _project_imports(path: Path, root: Path) -> list[str]:
    """The project modules (files under `root`) a module imports at its top level."""
    return [name for name in _top_level_imports(path)
            if (root / (name.replace(".", "/") + ".py")).is_file()]


def requirements(modules: list[str], root: Path = ROOT) -> list[str]:
    """Pinned requirements (from requirements.txt) of the modules' third-party imports,
    without what the container already has."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (root / "requirements.txt").read_text(),
                           re.MULTILINE))
    wanted = set()
    for module in modules:
        for name in _top_level_imports(root / (module.replace(".", "/") + ".py")):
            top = name.split(".")[0]
            if top in DISTRIBUTIONS and top not in IN_CONTAINER:
                wanted.add(DISTRIBUTIONS[top])
    return sorted(f"{d}=={pins[d]}" if d in pins else d for d in wanted)


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
    modules = module_closure("training.predict")
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
                   "".join(f"{r}\n" for r in requirements(modules)).encode())
        _add_modules(archive, modules, "code/")
    return description


def build_source_archive(output: Path) -> list[str]:
    """Write `sourcedir.tar.gz` for a training job; returns the modules packed."""
    modules = sorted({p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
                      for p in (ROOT / "training").glob("*.py")})
    output.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(output, "w:gz") as archive:
        _add_modules(archive, modules, "")
        _add_bytes(archive, TRAINING_ENTRY, TRAINING_ENTRY_SOURCE.encode())
        _add_bytes(archive, "requirements.txt",
                   "".join(f"{r}\n" for r in requirements(modules)).encode())
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
