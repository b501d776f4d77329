"""Import a model.py from a path, as its own module, without touching sys.path."""

import importlib.util
import itertools
from pathlib import Path

_counter = itertools.count()


def load_model_module(path, debug: bool | None = None):
    """Import the file at `path` as a fresh module and return it.

    Each call gives a new module object, so two model.py files (yours and a reference) can be
    loaded side by side. debug=True/False switches the module's DEBUG mode (and torch's
    determinism settings) through its set_debug(); None leaves the file's own setting.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no model.py at {path}")
    name = f"infkit_model_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if debug is not None:
        set_debug(module, debug)
    return module


def set_debug(module, enabled: bool):
    """DEBUG on/off for a loaded model module, whether or not it defines set_debug()."""
    if hasattr(module, "set_debug"):
        module.set_debug(enabled)
    else:
        import torch

        module.DEBUG = enabled
        torch.use_deterministic_algorithms(enabled)
        torch.backends.cuda.matmul.allow_tf32 = not enabled
        torch.backends.cudnn.allow_tf32 = not enabled
