"""What to do about a common exception from a student's model.py, in one or two lines.

    explain(exc)                          -> str | None   # a live exception (notebook, tests)
    explain_error(kind, message, where)   -> str | None   # one described by name and text
                                                          # (checks.describe_error's fields)

None means there is no better advice than the exception itself. The hints cover what students
meet on the way: a file that does not import, a tensor made on a fixed 'cuda' device on a
runtime without a GPU (or on another device than the weights), and a KV cache allocated in
another dtype than the weights. The answer names the line of model.py where it happened.
"""

import os
import re
import traceback

NO_GPU = (
    "Torch not compiled with CUDA enabled",
    "Found no NVIDIA driver",
    "No CUDA GPUs are available",
    "CUDA driver initialization failed",
    "no CUDA-capable device",
)
# PyTorch's spellings of dtypes in error messages -> the name to write in code
DTYPE_NAMES = {
    "half": "float16",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "float": "float32",
    "float32": "float32",
    "double": "float64",
    "float64": "float64",
}
DTYPE_WORDS = re.compile(
    r"\b(?:c10::|torch\.)?(BFloat16|bfloat16|Half|half|Float|float|Double|double|float16|float32|float64)\b"
)


def where(exc: BaseException, filename: str = "model.py") -> str:
    """'model.py line 136, in init_kv_cache' for the deepest frame of `filename`, or ''."""
    if isinstance(exc, SyntaxError) and exc.filename and os.path.basename(exc.filename) == filename:
        return f"{filename} line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.basename(f.filename) == filename]
    if not frames:
        return ""
    return f"{filename} line {frames[-1].lineno}, in {frames[-1].name}"


def explain(exc: BaseException, filename: str = "model.py") -> str | None:
    """One or two lines on what to do about exc raised by (or while importing) `filename`."""
    if isinstance(exc, SyntaxError):  # IndentationError and TabError too
        line = (exc.text or "").strip()
        return (
            f"{where(exc, filename) or filename} is not valid Python ({exc.msg}){': ' + line if line else ''}.\n"
            f"Fix that line, save {filename}, and run the cell again."
        )
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (
            f"{filename} imports {exc.name!r}, which this runtime does not have ({where(exc, filename)}).\n"
            f"Remove that import: {filename} needs only torch and Python's standard library."
        )
    if isinstance(exc, NameError) and getattr(exc, "name", None):
        return (
            f"{where(exc, filename) or filename} uses {exc.name!r}, which is not defined there "
            "(a typo, a missing import, or a name from another method)."
        )
    return explain_error(type(exc).__name__, str(exc), where(exc, filename), _cache_dtypes(exc))


def explain_error(kind: str, message: str, where: str = "", cache: tuple | None = None) -> str | None:
    """The hint for an exception known by its class name and message. `where` is a place in
    model.py ('model.py line 136, ...'); `cache` is (kv_cache dtype, weight dtype) when known."""
    at = f" ({where})" if where else ""
    if any(text in message for text in NO_GPU) or (kind == "AssertionError" and "CUDA" in message):
        return (
            f"model.py asks for a 'cuda' tensor, but this runtime has no GPU{at}.\n"
            "Create tensors on the device of the prompt or of the weights (device=idx.device, or "
            "w.device with w = self.c_attn.weight), never a fixed 'cuda'."
        )
    if "Expected all tensors to be on the same device" in message:
        devices = re.findall(r"\b(cuda:\d+|cuda|cpu)\b", message)
        which = f" ({' and '.join(dict.fromkeys(devices))})" if devices else ""
        return (
            f"two tensors are on different devices{which}{at}.\n"
            "Create new tensors (the KV cache, masks, positions) on the device of the prompt or the "
            "weights (device=idx.device, or self.c_attn.weight.device), never a fixed one."
        )
    if "CUBLAS_WORKSPACE_CONFIG" in message:
        return (
            "deterministic cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before CUDA starts: restart the "
            "runtime (Runtime > Restart session) and run the set-up cell first."
        )
    if "out of memory" in message.lower() and kind.endswith(("OutOfMemoryError", "RuntimeError")):
        return (
            f"the GPU ran out of memory{at}. Restart the runtime (Runtime > Restart session), run the "
            "set-up cell, and size the KV cache for the batch and block_size it is asked for."
        )
    dtypes = _dtypes_in(message) if ("dtype" in message or "scalar type" in message) else []
    if len(dtypes) >= 2:
        return _dtype_hint(dtypes, at, cache)
    return None


def _dtypes_in(message: str) -> list[str]:
    return list(dict.fromkeys(DTYPE_NAMES[m.lower()] for m in DTYPE_WORDS.findall(message)))


def _dtype_hint(dtypes: list[str], at: str, cache: tuple | None) -> str:
    if cache and cache[0] != cache[1]:
        return (
            f"the KV cache is {cache[0]} but the weights are {cache[1]}{at}.\n"
            "Allocate it in init_kv_cache with the weights' dtype (dtype=self.c_attn.weight.dtype), "
            "not a fixed one, so it follows the model through .half() / .to()."
        )
    return (
        f"tensors of two dtypes meet here ({' and '.join(dtypes)}){at}.\n"
        "Make new tensors, the KV cache above all, in the dtype of the weights "
        "(dtype=self.c_attn.weight.dtype), never a fixed one."
    )


def _cache_dtypes(exc: BaseException) -> tuple | None:
    """(kv_cache dtype, weight dtype) as names, from the attention module in exc's frames."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_locals.get("self")
        for candidate in _attention_modules(module):
            cache = getattr(candidate, "kv_cache", None)
            weight = getattr(getattr(candidate, "c_attn", None), "weight", None)
            if getattr(cache, "dtype", None) is not None and getattr(weight, "dtype", None) is not None:
                return (str(cache.dtype).removeprefix("torch."), str(weight.dtype).removeprefix("torch."))
        tb = tb.tb_next
    return None


def _attention_modules(module):
    """The module itself if it holds a kv_cache, else its submodules that do (a GPT)."""
    if module is None or not hasattr(module, "modules"):
        return []
    if hasattr(module, "kv_cache"):
        return [module]
    try:
        return [m for m in module.modules() if hasattr(m, "kv_cache")][:1]
    except Exception:  # a half-built module: no facts to add
        return []
