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
from pathlib import Path

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


def student_frames(exc: BaseException, filename: str = "model.py", path=None) -> list:
    """The frames of exc's traceback that lie in the student's file, innermost last: the file at
    `path` (a resolved Path) when given, else any file named `filename`. Every message that names
    a line of model.py (hints, crash reports, the worker's records, the notebook) reads this."""
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        return [f for f in frames if Path(f.filename).resolve() == path]
    return [f for f in frames if os.path.basename(f.filename) == filename]


def where(exc: BaseException, filename: str = "model.py") -> str:
    """'model.py line 136, in init_kv_cache' for the deepest frame of `filename`, or ''."""
    if isinstance(exc, SyntaxError) and exc.filename and os.path.basename(exc.filename) == filename:
        return f"{filename} line {exc.lineno}"
    frames = student_frames(exc, filename)
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


# ---------------------------------------------------------------------------------------
# Hints that name a bug only after testing it: the check recomputes what the student's output
# would be under each suspected bug and names the one it matches, or none.

# Where GPT.decode may place token t of a one-token-per-step decode (kv_pos = t before it).
# Each is a bug students make: an arange one too far, and an arange from 0 on every call (the
# T_new new tokens numbered from 0). One step behind is the second from token 1 on (token 0
# cannot sit at -1), so it gets the second's hint, which is true of that token.
POSITION_SUSPECTS = {
    "kv_pos + 1": lambda t: t + 1,
    "0": lambda t: 0,
}


def forward_at_positions(model, idx, positions):
    """The given forward() of `model` (no cache) over idx (B, T) with the position embedding
    taken at `positions` (T,) instead of 0..T-1: logits (B, T, V)."""
    import torch

    with torch.no_grad():
        pos = torch.tensor(positions, dtype=torch.long, device=idx.device)
        x = model.transformer.drop(model.transformer.wte(idx) + model.transformer.wpe(pos))
        for block in model.transformer.h:
            x = block(x)
        return model.lm_head(model.transformer.ln_f(x))


def decode_position_suspect(model, idx, steps, t, close) -> str | None:
    """Which of POSITION_SUSPECTS explains the student's one-token decode steps 0..t, or None.

    model: a reference GPT (its forward is the given code); idx (B, total) the tokens decoded one
    per step from an empty cache; steps[i] the student's logits (B, 1, V) for token i; close(got,
    expected) the check's comparison. A suspect explains the steps when every one of them
    equals forward() with that position rule applied to every token so far."""
    block_size = model.config.block_size
    for name, rule in POSITION_SUSPECTS.items():
        positions = [rule(i) for i in range(t + 1)]
        if min(positions) < 0 or max(positions) >= block_size:
            continue
        logits = forward_at_positions(model, idx[:, : t + 1], positions)
        if all(close(steps[i], logits[:, i : i + 1]) for i in range(t + 1)):
            return name
    return None


def decode_position(model, idx, steps, t, close) -> str:
    """The sentence that follows "GPT.decode of the token at position t differs from forward()":
    the position bug that the steps match, or where to look when they match none."""
    found = decode_position_suspect(model, idx, steps, t, close)
    if found is None:
        return (
            " Your logits match no misplaced position either: compare each part of the step with "
            "forward() (the token and position embeddings, every block's decode(), ln_f, lm_head)."
        )
    return (
        f" Your logits are what forward() gives with this token at position {found}"
        f"{'' if found.isdigit() else f' (= {POSITION_SUSPECTS[found](t)})'}; it sits at position kv_pos "
        f"(= {t}): embed new tokens at positions kv_pos .. kv_pos + T_new - 1."
    )


# Masks a fast path (scaled_dot_product_attention outside DEBUG) may apply by mistake, as a rule
# allowed(i, j) for new query i over key j, and what to do about each.
MASK_SUSPECTS = {
    "top-left": (
        lambda i, j: j <= i,
        "your output is what attention gives with the causal mask aligned to the top-left: "
        "scaled_dot_product_attention(..., is_causal=True) with fewer new queries than cached keys "
        "lets new token i see only keys 0..i. Pass an explicit mask (or the given attend(q, k, v, q_start)).",
    ),
    "none": (
        lambda i, j: True,
        "your output is what attention gives with no mask at all: with several new tokens, new token i "
        "must not see new tokens after it. Pass a mask that lets it see the cache and new tokens 0..i "
        "(or the given attend(q, k, v, q_start)).",
    ),
}
NO_MASK_SUSPECT = (
    "It matches no misplaced mask either: compare the fast path (the attention call, its mask, the "
    "dtypes it gets) with the DEBUG path, which is right."
)


def attention_with_mask(attn, x, start: int, end: int, allowed):
    """The given attention module `attn` (layer weights only, no cache) for new tokens
    start..end-1 of x (B, total, C) over keys 0..end-1, with query i allowed key j where
    allowed(i, j): (B, end - start, C)."""
    import math

    import torch

    with torch.no_grad():
        B, _, C = x.shape
        nh = attn.n_head
        q, k, v = attn.c_attn(x[:, :end]).split(C, dim=2)
        q, k, v = (t.view(B, end, nh, C // nh).transpose(1, 2) for t in (q, k, v))
        q = q[:, :, start:end]
        mask = torch.tensor([[allowed(i, j) for j in range(end)] for i in range(end - start)])
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // nh)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, end - start, C)
        return attn.c_proj(y)


def fast_path_mask(attn, x, start: int, end: int, got, close) -> str:
    """What follows "decode() of positions start..end-1 is correct in DEBUG, wrong outside it":
    the wrong mask that `got` matches (close(got, expected) compares), or where to look."""
    for allowed, hint in MASK_SUSPECTS.values():
        if close(got, attention_with_mask(attn, x, start, end, allowed)):
            return hint[0].upper() + hint[1:]
    return NO_MASK_SUSPECT


def crash_report(exc: BaseException, rerun: str, filename: str = "model.py") -> str:
    """A crash of the student's code inside a check, student's side first: what was raised and
    the line of `filename` it came from, the hint if one is known, and how to see the rest
    (`rerun`, the command, run again with INFKIT_TRACEBACK=1). With INFKIT_TRACEBACK=1 set, the
    full traceback follows."""
    message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    frames = student_frames(exc, filename)
    at = ""
    if frames:
        at = f"\n  at {filename} line {frames[-1].lineno}, in {frames[-1].name}: {(frames[-1].line or '').strip()[:100]}"
    hint = explain(exc, filename)
    lines = f"your code raised {type(exc).__name__}{': ' + message if message else ''}{at}"
    lines += f"\n  {hint.replace(chr(10), ' ')}" if hint else ""
    if os.environ.get("INFKIT_TRACEBACK") == "1":
        return lines + "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return lines + f"\n  (the full traceback: INFKIT_TRACEBACK=1 {rerun})"


def checks_crash(exc: BaseException, module, piece: str) -> str:
    """crash_report for `python -m infkit.checks`, whose rerun names the file and the piece."""
    return crash_report(exc, f"python -m infkit.checks {getattr(module, '__file__', 'model.py')} {piece}")
