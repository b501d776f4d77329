"""The public tests grade ./model.py (or INFKIT_MODEL), loaded in DEBUG mode, once per run."""

import pytest
import torch

from infkit import loading, paths

torch.set_num_threads(1)  # the fixtures are tiny: one thread is fastest and steadiest


@pytest.fixture(scope="session")
def model_module():
    path = paths.default_model_path()
    try:
        return loading.load_model_module(path, debug=True)
    except FileNotFoundError:
        pytest.fail(f"no model.py at {path}: run pytest from the inference-kit folder.", pytrace=False)
    except Exception as e:
        pytest.fail(f"{path.name} does not import: {type(e).__name__}: {e}", pytrace=False)
