"""google.colab.drive: mount() makes the MyDrive folder, or fails when access is refused."""

import os
from pathlib import Path


class MessageError(Exception):
    """What Colab raises when the student does not grant Drive access."""


def mount(mountpoint, **_options) -> None:
    if os.environ.get("COLAB_STANDIN_DRIVE") == "refuse":
        raise MessageError("Error: credential propagation was unsuccessful")
    (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)
