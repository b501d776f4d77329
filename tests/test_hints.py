"""infkit.hints: one or two actionable lines for the exceptions students meet, and the notebook's
check cells using them (no traceback on the student's path)."""

from pathlib import Path

import pytest
import torch

from infkit import hints, paths
from infkit import notebook as nb

SOLUTION = paths.SOLUTION_MODEL.read_text()
CACHE_LINE = (
    'self.register_buffer("kv_cache", torch.zeros(shape, device=w.device, dtype=w.dtype), persistent=False)'
)
CAST_LINE = "y = attend(q, keys.to(q.dtype), values.to(q.dtype), q_start=start)"


def variant(tmp_path, *edits) -> Path:
    """The solution with checked text substitutions, as model.py in tmp_path."""
    source = SOLUTION
    for old, new in edits:
        assert source.count(old) == 1, f"the solution changed: {old!r}"
        source = source.replace(old, new)
    path = tmp_path / "model.py"
    path.write_text(source)
    return path


def line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def short(message: str) -> str:
    assert "Traceback" not in message and 'File "' not in message, message
    assert len(message.splitlines()) <= 3, message
    return message


def test_syntax_error_names_the_line(tmp_path):
    path = variant(
        tmp_path, ("def init_kv_cache(self, batch_size: int, max_seq_len: int):", "def init_kv_cache(self:")
    )
    with pytest.raises(nb.Stop) as info:
        nb.load(path)
    message = short(str(info.value))
    assert (
        "model.py does not import" in message
        and f"model.py line {line_of(path, 'def init_kv_cache(self:')}" in message
    )


def test_missing_module_says_remove_the_import(tmp_path):
    path = variant(tmp_path, ("import torch\n", "import torch\nimport flash_attn\n"))
    with pytest.raises(nb.Stop) as info:
        nb.load(path)
    message = short(str(info.value))
    assert "'flash_attn'" in message and "Remove that import" in message


def test_name_error_at_import(tmp_path):
    path = variant(tmp_path, ("import torch\n", "import torch\nDEVICE = devce\n"))
    with pytest.raises(nb.Stop) as info:
        nb.load(path)
    assert "'devce'" in short(str(info.value))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a runtime without a GPU")
def test_hard_coded_cuda_on_a_cpu_runtime(tmp_path):
    new = CACHE_LINE.replace("device=w.device", 'device="cuda"')
    path = variant(tmp_path, (CACHE_LINE, new))
    with pytest.raises(nb.Stop) as info:
        nb.check("buffers", path=path)
    message = short(str(info.value))
    assert "no GPU" in message and "device=idx.device" in message
    line = line_of(path, 'device="cuda"')
    assert f"model.py line {line}, in init_kv_cache" in message


def test_cache_in_another_dtype_than_the_weights(tmp_path):
    """A float16 cache next to float32 weights, without the cast: the attention's matmul fails."""
    path = variant(
        tmp_path,
        (CACHE_LINE, CACHE_LINE.replace("dtype=w.dtype", "dtype=torch.float16")),
        (CAST_LINE, "y = attend(q, keys, values, q_start=start)"),
    )
    with pytest.raises(nb.Stop) as info:  # the buffers check names the dtype and the fix...
        nb.check("buffers", path=path)
    message = short(str(info.value))
    assert "float16" in message and "float32" in message, message
    assert "dtype=self.c_attn.weight.dtype" in message
    nb.check("attn_decode", path=path)  # ...and later pieces run on a cache the grader allocates


def test_device_mismatch():
    message = hints.explain_error(
        "RuntimeError",
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
        "model.py line 90, in decode",
    )
    assert "(cuda:0 and cpu) (model.py line 90, in decode)" in short(message)


@pytest.mark.parametrize(
    "message",
    [
        "expected m1 and m2 to have the same dtype, but got: c10::Half != float",
        "Expected query, key, and value to have the same dtype, but got query.dtype: float key.dtype: c10::Half",
        "expected scalar type Float but found Half",
    ],
)
def test_dtype_messages_name_both_dtypes(message):
    hint = short(hints.explain_error("RuntimeError", message))
    assert "float16" in hint and "float32" in hint


def test_no_hint_for_an_ordinary_error():
    assert hints.explain(ValueError("prompt too long")) is None
    assert hints.explain_error("IndexError", "index 5 is out of bounds") is None


def test_a_failed_benchmark_shows_its_last_line_not_its_traceback():
    tail = [
        "Traceback (most recent call last):",
        '  File "infkit/bench.py", line 10, in <module>',
        "AssertionError: Torch not compiled with CUDA enabled",
    ]
    words = nb._last_words(tail)
    assert "File " not in words and "no GPU" in words


def test_student_code_outside_the_check_cells(tmp_path):
    """The demo and sampling cells run the student's code inside nb.student_code: a stub, a
    hinted error and any other error each end the cell in a few lines."""
    path = variant(tmp_path)
    with pytest.raises(nb.NotDone, match="not implemented yet"):
        with nb.student_code("the demo", path):
            raise NotImplementedError("TODO(generate_kv): ...")
    with pytest.raises(nb.Stop) as info:
        with nb.student_code("the demo", path):
            raise RuntimeError("expected m1 and m2 to have the same dtype, but got: c10::Half != float")
    assert short(str(info.value)).startswith(
        "the demo: tensors of two dtypes meet here (float16 and float32)"
    )
    with pytest.raises(nb.Stop) as info:
        with nb.student_code("the demo", path):
            raise KeyError("x")
    assert short(str(info.value)) == "the demo: your code raised KeyError: 'x'"
