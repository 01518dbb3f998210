"""Makes a Python process behave as if only the packages of one pinned requirements file
were installed: the tests put this folder on PYTHONPATH, with SIEVE_ONLY_PACKAGES_OF
naming the file (requirements-web.txt), to run the web tier as the web image runs it.

Importing a module of any other installed distribution (torch, say) raises
ModuleNotFoundError, as it would where that distribution is not installed. Modules that
belong to no distribution (the standard library, Sieve's own packages) import as usual.
"""

import importlib.abc
import importlib.metadata
import os
import re
import sys


def _canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(path: str) -> set[str]:
    """The names pinned (`name==version`) in a pip-compile output file."""
    with open(path, encoding="utf-8") as file:
        return {_canonical(match[1]) for line in file
                if (match := re.match(r"^([A-Za-z0-9_.-]+)==", line))}


class OnlyPinned(importlib.abc.MetaPathFinder):
    """Refuses the top-level modules of distributions that the file does not pin."""

    def __init__(self, path: str):
        self.path, self.allowed = path, _pinned(path)
        self.owners = {module: {_canonical(d) for d in dists} for module, dists
                       in importlib.metadata.packages_distributions().items()}

    def find_spec(self, fullname, path=None, target=None):
        """None (let the other finders look) unless the module's distribution is left out."""
        owners = self.owners.get(fullname.partition(".")[0])
        if owners and not owners & self.allowed:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: {', '.join(sorted(owners))} is not in "
                f"{os.path.basename(self.path)}", name=fullname)
        return None


if os.environ.get("SIEVE_ONLY_PACKAGES_OF"):
    sys.meta_path.insert(0, OnlyPinned(os.environ["SIEVE_ONLY_PACKAGES_OF"]))
