import hashlib

from infkit import tokenizer


def test_known_ids():
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.encode(" the") == [262]
    assert tokenizer.gpt2_encoding().n_vocab == 50257
    assert tokenizer.gpt2_encoding().eot_token == 50256


def test_round_trip():
    for text in ["Call me Ishmael.", "  spaces\tand\nnewlines  ", "naïve café — 東京 🐋", ""]:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_data_files_are_gpt2s():
    data = tokenizer._data_dir()
    enc = hashlib.sha256((data / "encoder.json").read_bytes()).hexdigest()
    bpe = hashlib.sha256((data / "vocab.bpe").read_bytes()).hexdigest()
    assert enc == tokenizer.ENCODER_JSON_SHA256
    assert bpe == tokenizer.VOCAB_BPE_SHA256
