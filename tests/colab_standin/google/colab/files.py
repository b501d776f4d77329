"""google.colab.files: upload() copies the chosen files into the working folder, as Colab does."""

import os
import shutil
from pathlib import Path


def upload() -> dict:
    chosen = [Path(p) for p in os.environ.get("COLAB_STANDIN_UPLOADS", "").split(os.pathsep) if p]
    uploaded = {}
    for path in chosen:
        shutil.copyfile(path, Path.cwd() / path.name)
        uploaded[path.name] = path.read_bytes()
    return uploaded  # {} when the dialog was cancelled, as in Colab


def download(filename) -> None:
    print(f"[colab stand-in] download {filename}")
