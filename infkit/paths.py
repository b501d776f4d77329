"""Where things live. Everything is relative to the repository (or the unpacked handout)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_MODEL = ROOT / "solution" / "model.py"
STARTER_MODEL = ROOT / "starter" / "model.py"
HANDOUT_MODEL = ROOT / "model.py"  # in the student handout, the student's own file sits at the top


def cache_dir() -> Path:
    """Downloads (the novel) go here; override with INFKIT_CACHE."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "infkit"
    path = Path(os.environ.get("INFKIT_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_model_path() -> Path:
    """The model.py that tools use when none is named: INFKIT_MODEL if set, else ./model.py
    next to infkit/ (your own file in the handout; the course's tree looks in its own folders
    first)."""
    if os.environ.get("INFKIT_MODEL"):
        return Path(os.environ["INFKIT_MODEL"])
    for path in (SOLUTION_MODEL, HANDOUT_MODEL):
        if path.exists():
            return path
    return STARTER_MODEL
