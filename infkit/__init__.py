"""infkit: the shared machinery of the fast-inference course kit.

One importable package used by run.sh, the public tests, the notebook and the autograder:
  paths      where model.py and the caches live
  loading    import a model.py from any path, as its own module
  tokenizer  the GPT-2 BPE, built offline from files with known hashes
  corpus     the prompt corpus (256-token windows of a long public-domain novel)
  fixtures   seeded random-weight models: tiny, GPT-2 shapes, and a draft/target pair
  hf         the transformers twin of a fixture, the external oracle
  timing     synchronised wall-clock timing with medians
  checks     the correctness check of each piece (what the public tests run)
  bench      ./run.sh, the throughput and latency test
"""

__version__ = "0.1.0"
