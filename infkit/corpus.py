"""The prompt corpus: uniformly sampled 256-token windows of a long real text.

As in the course's benchmark, the text is Moby Dick from Project Gutenberg (public domain),
with the Gutenberg header and licence removed and the line breaks inside paragraphs joined.
It is downloaded once and cached (see paths.cache_dir()).

Offline fallback (no network, or INFKIT_OFFLINE=1): the docstrings of a fixed list of Python
standard-library modules, joined in a fixed order. That is real English prose of about 100k
GPT-2 tokens that exists on every machine with Python. Prompt content does not change timing,
and with random-weight fixtures it does not change correctness checks either, so the fallback
is a fair stand-in; with real weights (which need the network anyway) the novel is used.
"""

import inspect
import os
import re
import urllib.request

import torch

from . import paths, tokenizer

NOVEL_URL = "https://www.gutenberg.org/cache/epub/2701/pg2701.txt"
NOVEL_FILE = "moby_dick.txt"
FALLBACK_MODULES = [
    "argparse", "asyncio", "collections", "contextlib", "dataclasses", "datetime", "decimal",
    "difflib", "email", "fractions", "functools", "http.client", "inspect", "itertools",
    "json", "logging", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3",
    "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "typing",
    "unittest", "urllib.request", "zipfile",
]  # fmt: skip


def clean_gutenberg(raw: str) -> str:
    """Drop the Gutenberg header/footer and join the line breaks inside paragraphs."""
    raw = raw.replace("\r\n", "\n")
    start = re.search(r"\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*?\*\*\*", raw)
    end = re.search(r"\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG", raw)
    body = raw[start.end() if start else 0 : end.start() if end else len(raw)]
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body)]
    return "\n\n".join(p for p in paragraphs if p)


def fallback_text() -> str:
    """Offline stand-in: docstrings of FALLBACK_MODULES and their public members."""
    import importlib
    import warnings

    parts = []
    with warnings.catch_warnings():  # some stdlib attributes warn when touched
        warnings.simplefilter("ignore")
        for name in FALLBACK_MODULES:
            parts.extend(_module_docs(importlib.import_module(name)))
    return "\n\n".join(parts)


def _module_docs(module) -> list[str]:
    docs = [inspect.getdoc(module) or ""]
    for attr in sorted(dir(module)):
        if not attr.startswith("_"):
            doc = inspect.getdoc(getattr(module, attr, None))
            if doc and doc not in docs:
                docs.append(doc)
    return [" ".join(d.split()) for d in docs if d]


def _download_novel(timeout: float = 15.0) -> str | None:
    if os.environ.get("INFKIT_OFFLINE") == "1":
        return None
    try:
        with urllib.request.urlopen(NOVEL_URL, timeout=timeout) as response:
            return clean_gutenberg(response.read().decode("utf-8-sig"))
    except Exception:  # no network: any failure means "use the fallback"
        return None


def load_text() -> tuple[str, str]:
    """Returns (text, source) where source is 'moby-dick' or 'stdlib-docstrings'."""
    cached = paths.cache_dir() / NOVEL_FILE
    if cached.exists():
        return cached.read_text(encoding="utf-8"), "moby-dick"
    text = _download_novel()
    if text:
        cached.write_text(text, encoding="utf-8")
        return text, "moby-dick"
    return fallback_text(), "stdlib-docstrings"


_TOKENS: dict = {}


def corpus_tokens() -> tuple[torch.Tensor, str]:
    """The whole corpus as one LongTensor of GPT-2 token ids (cached in memory)."""
    if "ids" not in _TOKENS:
        text, source = load_text()
        _TOKENS["ids"] = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        _TOKENS["source"] = source
    return _TOKENS["ids"], _TOKENS["source"]


def sample_prompts(n: int, length: int = 256, seed: int = 0, vocab_size: int | None = None):
    """n windows of `length` consecutive tokens, start positions uniform over the corpus.

    Returns a LongTensor (n, length). vocab_size < 50257 (tiny fixtures) folds ids into range.
    """
    ids, _ = corpus_tokens()
    if length > ids.numel():
        raise ValueError(f"prompt length {length} exceeds the corpus ({ids.numel()} tokens)")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - length + 1, (n,), generator=g)
    prompts = torch.stack([ids[s : s + length] for s in starts.tolist()])
    if vocab_size is not None and vocab_size < 50257:
        prompts = prompts % vocab_size
    return prompts
