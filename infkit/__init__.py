"""infkit: the shared machinery of the fast-inference course kit.

One importable package used by run.sh, the autograder, the notebook and the tests:
  paths      where the solution, the starter and caches live
  loading    import a model.py from any path (a student's, the starter, the solution)
  tokenizer  the GPT-2 BPE, built offline from files with known hashes
  corpus     the prompt corpus (256-token windows of a long public-domain novel)
  fixtures   seeded random-weight models: tiny, GPT-2 shapes, and a draft/target pair
  hf         the transformers twin of a fixture, the external oracle
  timing     synchronised wall-clock timing with medians
  starter    generate starter/model.py from solution/model.py
"""

__version__ = "0.1.0"
