"""The documentation builds cleanly with `mkdocs build --strict`, and every nav page exists."""

import ast
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pydantic_settings
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 120


def mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess:
    """Run `mkdocs build --strict` on `config` into `site_dir`; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(config), "--site-dir", str(site_dir)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about MkDocs 2.0
    )


def nav_pages(nav) -> list[str]:
    """The Markdown files named in a mkdocs `nav` tree (external links left out)."""
    if isinstance(nav, str):
        return [] if "://" in nav else [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def load_config() -> dict:
    """mkdocs.yml as plain data (it uses no custom YAML tags)."""
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_every_nav_page_exists():
    pages = nav_pages(load_config()["nav"])
    assert pages, "mkdocs.yml has an empty nav"
    missing = [page for page in pages if not (ROOT / "docs" / page).is_file()]
    assert not missing, f"nav pages missing under docs/: {missing}"


def test_docs_build_strict(tmp_path):
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


@pytest.mark.parametrize(
    "link",
    ["[gone](no-such-page.md)", "[gone](index.md#no-such-heading)"],
    ids=["missing-page", "missing-anchor"],
)
def test_docs_build_fails_on_broken_link(tmp_path, link):
    """The strict build is a real check: a copy of the docs with one broken link fails."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write(f"\n\nSee {link}.\n")
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0, "a broken link did not fail `mkdocs build --strict`"
    assert "no-such" in result.stderr


# --- The shell commands of the README and docs/*.md, run as a reader runs them ----------
#
# Every command of a ```sh / ```bash / ```shell / ```console block is run by default, one
# file at a time, in order, with the virtual environment first on PATH (as if activated),
# from the repository root, against a sandbox: the session's private Redis, a new SQLite
# database with the accounts the examples name, and a model store with two versions of
# each test model (v1 in production). A command that would serve, deploy, train for
# minutes or change the checkout is rewritten or skipped by the first rule of RULES that
# matches it, and each rule says why. A rule that matches no command fails
# test_every_rule_is_used, so that the list stays honest.

COMMAND_TIMEOUT_S = 240
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
DOC_FILES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
EXAMPLE_ACCOUNTS = ("you@example.com", "admin@example.com")
NEW_ACCOUNT = "new-user@example.com"

HELP = "--help"  # actions: run `command --help`,
DRY_RUN = "make -n"  # print the make recipe without running it,
SKIP = "skip"  # or leave the command out. A (pattern, replacement) pair rewrites it.
RULES = [
    (r"^make (run|test|docs|compile-deps|sync-deps)\b", DRY_RUN,
     "`make run` and `make docs` serve until stopped, `make test` is this suite, and the "
     "deps targets rewrite requirements*.txt or the shared .venv; tests/test_make_run.py "
     "runs `make run` for real"),
    (r"docker compose", SKIP,
     "Docker cannot run here; tests/test_repository.py checks docker-compose.yml"),
    (r"^aws ", SKIP, "needs an AWS account"),
    (r">> *\.env\b", SKIP, "appends to the reader's own .env"),
    (r"--help\b", None, "already asks for the help only: run as written"),
    (r"training\.sagemaker \w+", HELP,
     "calls AWS (SageMaker, S3); tests/test_sagemaker_*.py run these against moto"),
    (r"celery -A workers (worker|flower)", HELP, "serves until stopped"),
    (r"flask --app web run", HELP, "serves until stopped; tests/test_make_run.py serves"),
    (r"SECRET_KEY=\.\.\.", (r"SECRET_KEY=\.\.\.(.*?)gunicorn (.*)", f"SECRET_KEY="
                            f"{secrets.token_hex(32)}" r"\1gunicorn --check-config \2"),
     "gunicorn serves until stopped: --check-config loads the production app and exits; "
     "the reader's SECRET_KEY stands in for `...`"),
    (r"-m bench\.", HELP,
     "benchmarks run for minutes to hours; their figures are in docs/benchmarks.md"),
    (r"-m training\.train .*--train", HELP,
     "trains for minutes; tests/test_train.py and tests/test_make_run.py train"),
    (r"-m training\.outliers --preview", HELP,
     "draws 60,000 pictures into the working folder; tests/test_outliers.py covers it"),
    (r"get_state_dict\(", SKIP, "downloads pretrained weights from download.pytorch.org; "
     "tests/test_backbones.py and tests/test_folder_domain.py write their own state dicts"),
    (r"\bpip install\b", SKIP, "installs into the reader's environment; tests/test_client.py "
     "installs the project with pip into a temporary folder and runs its commands"),
    (r"^sieve (predict|status|follow|runs|models)\b", SKIP,
     "a request to a running service with the reader's token; tests/test_client.py runs each "
     "subcommand against a live server with a real worker"),
    (r"^curl ", SKIP, "a request to a running service; tests/test_api_*.py send these "
     "requests and tests/test_make_run.py one to `make run`'s service"),
    (r"docs/examples/", SKIP,
     "a client of a running service; tests/test_api_live.py runs the examples"),
    (r"\b(RUN_ID|TOKEN_ID|ID|ID1|ID2)\b|sieve_\.\.\.", SKIP,
     "a placeholder for a value the reader fills in"),
    (r"-m workers\.runs submit .*--wait", (r" --wait\b", ""),
     "no training worker runs here (the run stays queued); tests/test_training_jobs.py "
     "follows runs on a real one"),
    (r"create-user you@example\.com", (r"you@example\.com", NEW_ACCOUNT),
     "the sandbox already has the accounts the other examples use"),
    (r"(classifier|filter) v[3-9]\b", (r"\bv[3-9]\b", "v2"),
     "the sandbox store has versions v1 and v2 of each model"),
    (r"mkdocs build", (r"mkdocs build", "mkdocs build --site-dir {tmp}/site"),
     "builds into a temporary folder, not site/ in the checkout"),
    (r"-m training\.uploads --preview", (r"--preview (\S+)", r"--preview {tmp}/\1"),
     "draws the picture into a temporary folder, not into the checkout"),
]


def shell_commands(path: str) -> list[tuple[int, str]]:
    """(line number, command) of every command in the file's shell blocks: continuation
    lines joined, comments and blank lines left out."""
    commands, block, continued = [], None, ""
    for number, line in enumerate((ROOT / path).read_text().splitlines(), 1):
        fence = line.strip()
        if fence.startswith("```"):
            block = None if block is not None else fence[3:].strip()
            continue
        if block not in SHELL_LANGUAGES:
            continue
        text = line.split(" #", 1)[0].rstrip() if " #" in line else line.rstrip()
        if text.lstrip().startswith("#"):
            continue
        if continued:
            start, head = continued
            text = head + " " + text.strip()
        else:
            start = number
        if text.endswith("\\"):
            continued = (start, text[:-1].rstrip())
            continue
        continued = ""
        if text.strip():
            commands.append((start, text.strip().removeprefix("$ ")))
    return commands


def plan(command: str) -> tuple[str | None, str, int]:
    """The command to run (None: skipped), why, and the index of the rule that decided."""
    for index, (pattern, action, reason) in enumerate(RULES):
        if not re.search(pattern, command):
            continue
        if action is None:
            return command, reason, index
        if action == SKIP:
            return None, reason, index
        if action == HELP:
            return command.rstrip("& ") + " --help", reason, index
        if action == DRY_RUN:
            return "make -n " + command.removeprefix("make "), reason, index
        return re.sub(action[0], action[1], command), reason, index
    return command, "run as written", -1


@pytest.fixture
def sandbox(tmp_path, redis_server, trained_store):
    """The environment the docs' commands run in (see the comment above RULES)."""
    from sieve import registry
    from sieve.migrate import upgrade
    from sieve.store import ModelStore
    from tests.stores import copy_version

    store = ModelStore(tmp_path / "models")
    for name in ("classifier", "filter"):
        for _ in range(2):
            copy_version(trained_store, store, name, "v1")
        registry.promote(name, "v1", store=store)
    database_url = f"sqlite:///{tmp_path / 'sieve.db'}"
    upgrade(database_url)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "VIRTUAL_ENV": str(Path(bin_dir).parent), "REDIS_URL": redis_server.url,
           "CELERY_BROKER_URL": redis_server.url, "CELERY_RESULT_BACKEND": redis_server.url,
           "DATABASE_URL": database_url, "MODEL_STORE_URL": str(store.root),
           "NO_MKDOCS_2_WARNING": "1", "SIEVE_RATE_LIMIT": "0/minute"}
    for email in EXAMPLE_ACCOUNTS:
        subprocess.run([sys.executable, "-m", "flask", "--app", "web", "create-user", email,
                        "--admin", "--password", "a long enough password"], cwd=ROOT,
                       env=env, check=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)
    return env


def test_every_doc_command_is_found():
    """The extraction sees the commands a reader sees (a guard for the test below)."""
    readme = [command for _, command in shell_commands("README.md")]
    assert readme[:2] == ["make run", "make test"]
    assert any(c.startswith("SIEVE_ENV=production SECRET_KEY=... .venv/bin/gunicorn")
               for c in readme), readme
    assert all(not c.endswith("\\") and "#" not in c for c in readme), readme


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", DOC_FILES)
def test_doc_commands_run(path, sandbox, tmp_path):
    failures = []
    for line, command in shell_commands(path):
        actual, reason, _ = plan(command)
        if actual is None:
            continue
        actual = actual.replace("{tmp}", str(tmp_path))
        stdin = "a long enough password\n" * 2 if "create-user" in actual else ""
        try:
            done = subprocess.run(["bash", "-c", actual], cwd=ROOT, env=sandbox, input=stdin,
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            failures.append(f"{path}:{line}: `{command}` (ran `{actual}`: {reason}) did not "
                            f"finish within {COMMAND_TIMEOUT_S} s")
            continue
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip().splitlines()[-8:]
            failures.append(f"{path}:{line}: `{command}` (ran `{actual}`: {reason}) exited "
                            f"{done.returncode}:\n    " + "\n    ".join(output))
    assert not failures, "documented commands that fail:\n" + "\n".join(failures)


def test_every_rule_is_used():
    """A rule that no documented command needs any more is removed, so that the list of
    skipped and rewritten commands stays the list of what the docs hold."""
    used = {plan(command)[2] for path in DOC_FILES for _, command in shell_commands(path)}
    unused = [RULES[i][0] for i in range(len(RULES)) if i not in used]
    assert not unused, f"rules in tests/test_docs.py that match no documented command: {unused}"


# --- .env.example names every setting the code reads --------------------------------------

SETTING_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
SOURCE_PACKAGES = ("sieve", "web", "workers", "training", "sieve_client")
# Names the code reads that are not settings of a person running Sieve, and why.
NOT_SETTINGS = {
    "SM_CHANNEL_BACKBONE": "set by the SageMaker training container",
    "SM_CHANNEL_OUTLIERS": "set by the SageMaker training container",
    "SM_CHANNEL_TRAINING": "set by the SageMaker training container",
    "SM_CHANNEL_WEIGHTS": "set by the SageMaker training container",
    "SM_HPS": "set by the SageMaker training container",
    "SM_MODEL_DIR": "set by the SageMaker training container",
    "SM_NUM_GPUS": "set by the SageMaker training container",
    "SM_OUTPUT_DATA_DIR": "set by the SageMaker training container",
    "XDG_CONFIG_HOME": "the desktop's configuration folder, where the client looks for its file",
}
# Names .env.example lists that Sieve's code does not read itself: a library does.
READ_BY_LIBRARIES = {
    "AWS_ACCESS_KEY_ID": "boto3", "AWS_SECRET_ACCESS_KEY": "boto3", "FLOWER_BASIC_AUTH": "flower",
}


def _environ_helpers(trees: list[ast.AST]) -> set[str]:
    """Names of the functions that read the environment (a helper taking a name)."""
    return {node.name for tree in trees for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and "environ" in ast.unparse(node)}


def _environ_reads(tree: ast.AST, helpers: set[str]) -> set[str]:
    """Setting names read in a module outside the settings object: os.environ[...] /
    .get(...) / getenv(...), and a helper that reads the environment (defined or imported,
    under any alias) called with a name as its first argument."""
    local = {alias.asname or alias.name for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) for alias in node.names
             if alias.name in helpers}
    local |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
              and node.name in helpers}
    names = set()
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            key = node.slice
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            receiver = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            if ((isinstance(func, ast.Attribute) and func.attr in ("get", "getenv")
                 and (receiver.endswith("environ") or receiver in ("os", "env")))
                    or (isinstance(func, ast.Name) and func.id in local)):
                key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return {name for name in names if SETTING_NAME.match(name)}


def settings_object_names(model=None) -> set[str]:
    """The environment variables the settings object reads: each field's alias (all of
    them where it has several), else its env_prefix and name; nested sections included."""
    from pydantic import AliasChoices

    from sieve.config import Settings

    model = model or Settings
    prefix = model.model_config.get("env_prefix", "")
    names = set()
    for name, field in model.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, pydantic_settings.BaseSettings):
            names |= settings_object_names(section)
        elif isinstance(field.validation_alias, AliasChoices):
            names |= set(field.validation_alias.choices)
        else:
            names.add(field.validation_alias or f"{prefix}{name}".upper())
    return names


def settings_read_by_the_code() -> dict[str, str]:
    """Every setting name the runtime packages read -> where: the settings object
    (sieve/config.py) or the first file that reads the environment itself."""
    found = dict.fromkeys(sorted(settings_object_names()), "sieve/config.py")
    paths = [path for package in SOURCE_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    trees = {path: ast.parse(path.read_text()) for path in paths}
    helpers = _environ_helpers(list(trees.values()))
    for path, tree in trees.items():
        for name in sorted(_environ_reads(tree, helpers)):
            found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def env_example_names() -> set[str]:
    """The names .env.example sets, commented out (`# NAME=`) or not."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))


def test_the_settings_scan_finds_settings_of_every_kind():
    """A guard for the scan: one setting of each way of reading them is found."""
    found = settings_read_by_the_code()
    for name in ("REDIS_URL", "SIEVE_TOP_K", "MAX_UPLOAD_MB", "SIEVE_RATE_LIMIT",
                 "SAGEMAKER_ROLE_ARN", "AWS_DEFAULT_REGION", "SM_MODEL_DIR", "SIEVE_URL"):
        assert name in found, f"the scan no longer finds {name}"


def test_env_example_names_every_setting_the_code_reads():
    listed = env_example_names()
    missing = {name: where for name, where in settings_read_by_the_code().items()
               if name not in listed and name not in NOT_SETTINGS}
    assert not missing, (
        "settings the code reads that .env.example does not list (add a commented "
        "`# NAME=default` line with what it does, or a reason to NOT_SETTINGS in "
        "tests/test_docs.py):\n" + "\n".join(f"  {name} (read in {where})"
                                            for name, where in sorted(missing.items())))


def test_env_example_lists_only_settings_that_something_reads():
    stale = env_example_names() - set(settings_read_by_the_code()) - set(READ_BY_LIBRARIES)
    assert not stale, (f".env.example lists settings nothing reads any more: {sorted(stale)} "
                       "(remove them, or name the library that reads them in "
                       "READ_BY_LIBRARIES in tests/test_docs.py)")


def test_a_new_command_is_run_as_written_and_the_rules_rewrite_the_rest():
    assert plan("python -m sieve.newtool --flag")[:2] == ("python -m sieve.newtool --flag",
                                                          "run as written")
    assert plan("make run")[0] == "make -n run"
    assert plan(".venv/bin/celery -A workers worker -Q training")[0].endswith(" --help")
    assert plan("python -m workers.runs status RUN_ID")[0] is None
    assert plan("python -m sieve.registry promote classifier v3")[0].endswith(" v2")
