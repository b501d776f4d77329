"""infkit: the shared machinery of the fast-inference course kit.

One importable package used by run.sh, the autograder, the notebook and the tests: the code
that students and the autograder share, and nothing else. Its modules
(the kit's own tests hold this list equal to the package's):
  agreeing_draft   a draft that always agrees, at the real draft's cost: run.sh's ceiling row
  bench            the throughput and latency tests behind run.sh (a subpackage)
  bench_models     the benchmark's models: a draft/target pair and their transformers twins
  checks           the correctness checks of each piece (public tests, autograder, notebook)
  corpus           the prompt corpus (256-token windows of a long public-domain novel)
  fixtures         seeded random-weight models: tiny, GPT-2 shapes, and draft/target pairs
  hf               the transformers twin of a model, the external oracle
  hints            one or two lines on what to do about a common exception
  loading          import a model.py from any path, as its own module
  notebook         the helpers behind notebooks/inference.ipynb
  optional         the optional pieces' probes and judges, by piece
  paths            where model.py, the given code and the caches live
  pieces           the pieces students write, the one list the rest reads
  requirements     the package versions the kit accepts, and the notebook's install step
  sampling_check   the statistical check of speculative sampling
  timing           synchronised wall-clock timing with medians
  tokenizer        the GPT-2 BPE, built offline from files with known hashes
"""

__version__ = "0.1.0"
