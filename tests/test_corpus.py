import torch

from infkit import corpus

GUTENBERG_SAMPLE = (
    "The Project Gutenberg eBook of Moby Dick\r\nheader text\r\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK MOBY DICK ***\r\n\r\n"
    "Call me Ishmael. Some years\r\nago, never mind how long\r\nprecisely.\r\n\r\n"
    "Second paragraph\r\nhere.\r\n"
    "*** END OF THE PROJECT GUTENBERG EBOOK MOBY DICK ***\r\nlicence text\r\n"
)


def test_clean_gutenberg_strips_and_joins():
    text = corpus.clean_gutenberg(GUTENBERG_SAMPLE)
    assert text == "Call me Ishmael. Some years ago, never mind how long precisely.\n\nSecond paragraph here."


def test_fallback_is_long_real_text():
    text = corpus.fallback_text()
    assert len(text) > 200_000
    assert " the " in text


def test_prompts_are_seeded_windows():
    ids, _ = corpus.corpus_tokens()
    a = corpus.sample_prompts(4, length=256, seed=1)
    b = corpus.sample_prompts(4, length=256, seed=1)
    c = corpus.sample_prompts(4, length=256, seed=2)
    assert a.shape == (4, 256) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    # every row is a contiguous window of the corpus
    joined = ids.tolist()
    first = a[0].tolist()
    starts = [i for i in range(len(joined) - 255) if joined[i] == first[0]]
    assert any(joined[s : s + 256] == first for s in starts)


def test_prompts_fold_into_small_vocab():
    p = corpus.sample_prompts(2, length=16, seed=0, vocab_size=512)
    assert int(p.max()) < 512
