"""Write notebooks/inference.ipynb from the cells below (the notebook's readable source).

    python notebooks/build_notebook.py          # (re)write the notebook
    python notebooks/build_notebook.py --check  # exit 1 if the committed notebook is stale

Edit the cells here, never the .ipynb by hand. Cells hold no logic of their own beyond glue
and plots: checks come from infkit.checks and speed figures from the run.sh benchmark, both
through infkit.notebook, so the notebook cannot drift from the tests or run.sh.
Each cell carries a tag (cell metadata) that tests and `make notebook-starter` look for.
"""

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "inference.ipynb"
# Staff: replace YOUR-ORG with the GitHub organisation that hosts the kit (README says so too).
COLAB_URL = (
    "https://colab.research.google.com/github/YOUR-ORG/inference-kit/blob/main/notebooks/inference.ipynb"
)
BADGE = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB_URL})"

# (tag, "md" | "code", source). Tags are unique; "check-<piece>" cells run one piece's check.
CELLS = [
    (
        "title",
        "md",
        f"""# Fast GPT-2 inference: a KV cache and speculative decoding

{BADGE}

This notebook is your workbench for the implementation part. You write six pieces in
`model.py` (the only file you hand in); the notebook checks each one as you go, measures the
speed of your code with the same benchmark as `./run.sh`, plots it, and ends with what to
upload to Gradescope.

How to work:
1. In Colab, choose **Runtime > Change runtime type > T4 GPU**, then run the set-up cell.
2. Open `model.py` from the Files pane (double-click it), fill in one `TODO(...)` stub, save
   (Ctrl+S), and run that piece's check cell. Every check imports `model.py` afresh, so you
   never need to restart the runtime after an edit.
3. **Runtime > Run all** stops at the first piece that is not done yet, with a short message
   saying what is missing.

Colab deletes files when the runtime is recycled: download `model.py` often (last section),
or keep the kit in Google Drive (see `KIT_DIR` in the set-up cell).""",
    ),
    (
        "setup-intro",
        "md",
        """## 0. Set-up

The next cell finds the kit, or fetches it in Colab: either upload `handout.zip` (from the
course page) when it asks, or drop it in the Files pane first, or set `HANDOUT_URL` to a git
URL your staff gave you. It then moves into the kit's folder and, in Colab, installs the kit's
pinned packages, except the ones Colab already provides (its CUDA build of PyTorch above all:
replacing it would need a restart and could lose the GPU build). Run it once per session.""",
    ),
    (
        "setup",
        "code",
        """import os
import subprocess
import sys
import zipfile
from pathlib import Path

HANDOUT_URL = ""  # a git URL of the handout; leave empty to upload handout.zip instead
# Where the kit goes in Colab. Path("/content/drive/MyDrive/inference-kit") keeps your work in Drive.
KIT_DIR = Path("/content/inference-kit")

# Deterministic cuBLAS, which DEBUG mode needs on a GPU, must be configured before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
IN_COLAB = "google.colab" in sys.modules


def find_kit():
    for folder in (Path.cwd(), Path.cwd().parent, KIT_DIR):
        if (folder / "infkit").is_dir() and (folder / "run.sh").is_file():
            return folder.resolve()
    return None


if find_kit() is None and IN_COLAB:
    if str(KIT_DIR).startswith("/content/drive"):
        from google.colab import drive

        drive.mount("/content/drive")
if find_kit() is None and IN_COLAB:
    if HANDOUT_URL:
        subprocess.run(["git", "clone", "--depth", "1", HANDOUT_URL, str(KIT_DIR)], check=True)
    else:
        zip_path = Path("/content/handout.zip")
        if not zip_path.exists():
            from google.colab import files

            print("Choose handout.zip to upload.")
            zip_path = Path.cwd() / next(iter(files.upload()))
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(KIT_DIR.parent)  # the zip holds one folder, inference-kit/

KIT = find_kit()
if KIT is None:
    raise SystemExit("Cannot find the kit (a folder with infkit/ and run.sh). Check HANDOUT_URL or the zip.")
os.chdir(KIT)
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

if IN_COLAB:
    # Keep Colab's own torch (CUDA build), numpy and notebook packages; pin the rest.
    keep = {"torch", "numpy", "ipykernel", "jupyter", "nbformat", "nbclient", "matplotlib", "ruff"}
    lines = [line.split("#")[0].strip() for line in Path("requirements.txt").read_text().splitlines()]
    pins = [line for line in lines if line and line.split("==")[0].lower() not in keep]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *pins], check=True)
print(f"kit folder: {KIT}")""",
    ),
    (
        "env",
        "code",
        """import matplotlib.pyplot as plt
import torch

from infkit import notebook as nb

ENV = nb.detect()
WORK = nb.workload(ENV)
MODEL_PATH = nb.model_path()
print(ENV.describe())
print(f"model.py under test: {MODEL_PATH}")
if ENV.device == "cuda":
    print(f"GPU: {torch.cuda.get_device_name()}")""",
    ),
    (
        "debug",
        "md",
        """## 1. DEBUG mode, and why exact comparisons need it

`model.py` has a switch at the top, `DEBUG`. With `DEBUG = True` (or `set_debug(True)`) the
model runs in fp32 with deterministic kernels, no TF32 and an explicit attention; then a
cached run and an uncached run add the same numbers in nearly the same order, and greedy
outputs match token for token. With `DEBUG = False` the fast path takes over
(`scaled_dot_product_attention`, bf16 autocast on the GPU): faster, but the two runs round
differently, so an exact match is no longer expected.

The checks below always load your file in DEBUG mode, whatever the flag says. On a GPU,
deterministic cuBLAS also needs the environment variable
`CUBLAS_WORKSPACE_CONFIG=:4096:8` to be set **before** CUDA starts; the set-up cell does that.
If you see an error that mentions `CUBLAS_WORKSPACE_CONFIG`, restart the runtime and run the
set-up cell first. In a terminal: `export CUBLAS_WORKSPACE_CONFIG=:4096:8`.""",
    ),
    (
        "kv-intro",
        "md",
        """## 2. The KV cache, one piece at a time

Each cell runs the check for one piece: the very function the public tests and the
autograder call (the autograder adds hidden seeds and shapes). It builds small random-weight
GPT-2s, computes the right answer with the plain `forward()` or the given `generate()`, and
compares. A failure says what differs and where to look.

### 2.1 `buffers`: `CausalSelfAttention.init_kv_cache`
Register one buffer `kv_cache` of shape `(2, batch_size, n_head, max_seq_len, head_dim)`
(keys at index 0, values at 1), zeros, `persistent=False`; set `seq_pos = 0`.""",
    ),
    ("check-buffers", "code", 'nb.check("buffers")'),
    (
        "prefill-intro",
        "md",
        """### 2.2 `prefill`: fill the cache in `CausalSelfAttention.forward`
When `enable_kv` is set, the forward pass over the prompt also writes its keys and values
into the cache and sets `seq_pos` to the prompt length; its output must not change.""",
    ),
    ("check-prefill", "code", 'nb.check("prefill")'),
    (
        "decode-intro",
        "md",
        """### 2.3 `attn_decode` and `gpt_decode`: the decode path
`CausalSelfAttention.decode(x)` appends the new tokens' keys and values after `seq_pos` and
attends over everything cached (new token *i* sees the cache and new tokens 0..*i*).
`GPT.decode(idx)` does the same for the whole model; the new tokens sit at positions
`kv_pos, kv_pos + 1, ...`, which matters for the position embedding.""",
    ),
    ("check-attn_decode", "code", 'nb.check("attn_decode")'),
    ("check-gpt_decode", "code", 'nb.check("gpt_decode")'),
    (
        "generate_kv-intro",
        "md",
        """### 2.4 `generate_kv`: prefill once, then one decode per token
Greedy (`top_k=1`) output must equal the given `generate()` exactly, and the model must see
the prompt once and then one token per step.""",
    ),
    ("check-generate_kv", "code", 'nb.check("generate_kv")'),
    (
        "demo-intro",
        "md",
        """### See it work
Your `generate_kv` next to the naive `generate`, on real GPT-2 when the GPU and the network
are there (otherwise on a random-weight stand-in, whose text is gibberish by design).""",
    ),
    (
        "demo",
        "code",
        """from infkit import fixtures, tokenizer

student = nb.load(debug=False)
if ENV.real_weights:
    demo_model = student.GPT.from_pretrained("gpt2").to(ENV.device).eval()
else:
    demo_model = fixtures.make_pair(student, "small")[1]
prompt = tokenizer.encode("The whale surfaced beside the ship, and the captain")
idx = torch.tensor([prompt], device=ENV.device)
with torch.no_grad():
    cached = demo_model.generate_kv(idx, 24, top_k=1)
    naive = demo_model.generate(idx, 24, top_k=1)
print(repr(tokenizer.decode(cached[0, len(prompt) :].tolist())))
print("same tokens as generate():", torch.equal(cached, naive), "(outside DEBUG a late difference is fine)")""",
    ),
    (
        "spec-intro",
        "md",
        """## 3. Speculative decoding

### 3.1 `speculative`: `GPT.generate_speculative`
In rounds: the draft model proposes `num_speculative` tokens; this model scores all of them in
**one** pass; keep the drafted tokens while they equal this model's choice, and at the first
difference keep this model's token instead. Greedy output must equal this model's own
`generate()` whatever the draft proposes: the check tries a good draft, a draft that never
agrees, and a perfect one (which must take few passes of the big model).""",
    ),
    ("check-speculative", "code", 'nb.check("speculative")'),
    (
        "public-tests-intro",
        "md",
        """### All public tests at once
The handout's `tests_public/` run the same checks through pytest, as the autograder does.""",
    ),
    ("public-tests", "code", "nb.public_tests()"),
    (
        "bench-intro",
        "md",
        """## 4. The speed test: `./run.sh`

The next cell runs the benchmark behind `./run.sh` on your `model.py` and prints the command,
so you can repeat it in a terminal (in Colab, `!python -m infkit.bench ...`, which skips the
virtual environment that `./run.sh` would build first). Prompts are windows of a public-domain novel; it times
the naive `generate`, your `generate_kv` and your `generate_speculative`, and compares them
with the transformers library's own generation. On a GPU it uses the released `gpt2-large`
weights with `gpt2` as the draft; the course targets are **more than 10x** the naive
throughput with the KV cache and about **2x** lower latency with speculative decoding.
Offline on a CPU it uses tiny random-weight stand-ins: the figures only show that it runs.
On a T4 this section takes several minutes, most of it loading the weights for each run.

Outside DEBUG the benchmark uses the fast path; the checks above are what prove correctness.""",
    ),
    (
        "bench",
        "code",
        """RUN = nb.bench(**WORK["run"])
print()
for label, key in [
    ("KV cache vs naive", "kv_speedup_vs_naive"),
    ("speculative vs KV cache", "spec_speedup_vs_kv"),
    ("acceptance rate", "acceptance_rate"),
    ("KV cache vs transformers generate", "kv_vs_transformers"),
    ("speculative vs transformers assisted", "spec_vs_transformers_assisted"),
]:
    unit = "" if key == "acceptance_rate" else "x"
    print(f"{label:38s} {nb.fmt(nb.figure(RUN, key), unit=unit)}")""",
    ),
    (
        "batch-intro",
        "md",
        """### Throughput against batch size
The naive loop re-reads the whole sequence for every token; the cache reads each token once.
A bigger batch shares every weight read across more rows, so throughput climbs until the
GPU's arithmetic, not its memory, is the limit (compare with your answers to the written
part). Shorter sequences than `run.sh` keep this quick; change `WORK["batch"]` to try others.""",
    ),
    (
        "batch-sweep",
        "code",
        """BATCH = nb.bench(quiet=True, **WORK["batch"])
sizes = WORK["batch"]["batch_size"]
plt.figure(figsize=(6, 4))
for method, label in [("naive", "naive generate"), ("kv", "generate_kv"), ("hf", "transformers generate")]:
    tokens_per_s = [nb.figure(nb.row(BATCH, method, b), "tokens_per_s") for b in sizes]
    plt.plot(sizes, nb.plottable(tokens_per_s), marker="o", label=label)
    figures = "  ".join(f"B={b}: {nb.fmt(y, '.0f')}" for b, y in zip(sizes, tokens_per_s))
    print(f"{label:22s} tokens/s {figures}")
plt.xscale("log", base=2)
plt.yscale("log")
plt.xticks(sizes, [str(b) for b in sizes])
plt.xlabel("batch size")
plt.ylabel("tokens / s (all rows together)")
plt.title(BATCH.get("workload", {}).get("pair", "throughput"))
plt.legend()
plt.show()""",
    ),
    (
        "spec-sweep-intro",
        "md",
        """### Speculative decoding against `num_speculative`
More drafted tokens per round means fewer passes of the big model when the draft is right,
and more wasted draft work when it is wrong. Where is the best `num_speculative` for this
pair, and how does it compare with your answer to question 2.3.3? The dotted line is your loop
with a draft that always agrees, at the real draft's cost: the best any draft could do here.
The gap to it is what disagreement costs; the gap between it and zero is the prefill and the
verify passes, which no draft removes.""",
    ),
    (
        "spec-sweep",
        "code",
        """SPEC = nb.sweep("num_speculative", WORK["num_speculative"], **WORK["spec"])
ks = [k for k, _ in SPEC]
spec_s = [nb.figure(nb.row(r, "speculative"), "median_s") for _, r in SPEC]
kv_s = [nb.figure(nb.row(r, "kv"), "median_s") for _, r in SPEC]
ceiling = [nb.ceiling_s(r) for _, r in SPEC]
accepted = [nb.figure(r, "acceptance_rate") for _, r in SPEC]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.plot(ks, nb.plottable(spec_s), marker="o", label="generate_speculative")
left.plot(ks, nb.plottable(kv_s), marker="s", linestyle="--", label="generate_kv (no draft)")
left.plot(ks, nb.plottable(ceiling), marker="^", linestyle=":", label="a draft that always agrees")
left.set(xlabel="num_speculative", ylabel="seconds per sample (batch 1)", title="latency", ylim=(0, None))
left.legend()
right.plot(ks, nb.plottable(accepted), marker="o")
right.set(xlabel="num_speculative", ylabel="accepted / drafted", title="acceptance rate", ylim=(0, 1.05))
plt.show()
for k, s, c, a in zip(ks, spec_s, ceiling, accepted):
    print(
        f"num_speculative={k}: {nb.fmt(s, '.3f', ' s')} per sample (a draft that always agrees: "
        f"{nb.fmt(c, '.3f', ' s')}), acceptance rate {nb.fmt(a)}"
    )""",
    ),
    (
        "sampling",
        "md",
        """## 5. Optional: speculative sampling with temperature > 0

Greedy speculative decoding keeps a drafted token only when it *is* the big model's argmax.
With sampling there is no single right token, so "agree" needs a new meaning. The rule
(Leviathan et al. 2023; Chen et al. 2023): with the draft's distribution q and the target's p at
the same position, keep a drafted token x with probability min(1, p(x)/q(x)); at the first
rejection draw the replacement from max(0, p - q), renormalised; if all k are kept, draw one
more token from p. Every emitted token is then distributed exactly as if the big model had
sampled alone. The draft only changes *how fast*, never *what*.

This is the optional piece `GPT._accept_sampled` in `model.py` (0 points unless your staff say
otherwise). The cell below measures the acceptance rate against temperature on the tiny pair,
and runs the statistical check the autograder uses: a chi-square test of 2,000 seeded
speculative runs against the target's exact distribution over the next two tokens of a
five-token-vocabulary model. Notice that acceptance need not fall with temperature: a higher
temperature flattens p and q alike, and two flat distributions overlap more.""",
    ),
    (
        "sampling-run",
        "code",
        """from infkit import sampling_check

module = nb.load(MODEL_PATH, debug=False)
try:
    rates = sampling_check.acceptance_vs_temperature(module, temperatures=(0.0, 0.3, 0.7, 1.0, 1.5, 2.0))
    verdict = sampling_check.check_sampling(module)
except NotImplementedError as e:
    print(f"optional piece not implemented: {e}")
else:
    temps = [t for t, _ in rates]
    plt.figure(figsize=(5, 3.5))
    plt.plot(temps, nb.plottable([r for _, r in rates]), marker="o")
    plt.gca().set(xlabel="temperature (0 = greedy)", ylabel="accepted / drafted", ylim=(0, 1.05))
    plt.title("speculative acceptance vs temperature (tiny pair)")
    plt.show()
    for t, r in rates:
        print(f"T={t}: acceptance {nb.fmt(r)}")
    status = "PASS" if verdict["passed"] else "FAIL"
    print(
        f"{status}  distribution check: chi2 {verdict['chi2']:.1f} vs critical {verdict['critical']:.1f} "
        f"(df {verdict['df']}, {verdict['runs']} runs, total variation {verdict['tv']:.3f})"
    )""",
    ),
    (
        "submit",
        "md",
        """## 6. Submitting to Gradescope

Two uploads:
- **Code**: your `model.py`, that one file, under that name. The autograder imports it, runs
  the public checks plus hidden ones (other seeds and shapes) and the speed test. Before you
  upload, run this notebook top to bottom: every check cell should print `PASS`.
- **Written part**: a PDF made from `written/template.tex` (Overleaf, or `pdflatex`).

The next cell downloads `model.py` in Colab (elsewhere it prints where the file is).""",
    ),
    (
        "download",
        "code",
        """if ENV.in_colab:
    from google.colab import files

    files.download(str(MODEL_PATH))
else:
    print(f"upload this file: {MODEL_PATH}")""",
    ),
]


def build() -> nbformat.NotebookNode:
    cells = []
    for tag, kind, source in CELLS:
        make = new_markdown_cell if kind == "md" else new_code_cell
        # A fixed id per cell (nbformat would draw random ones) keeps rebuilds byte-identical.
        cells.append(make(source, id=tag, metadata={"tags": [tag]}))
    metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        # Colab reads these: open with a GPU runtime and a table of contents.
        "accelerator": "GPU",
        "colab": {"provenance": [], "toc_visible": True, "gpuType": "T4"},
    }
    nb = new_notebook(cells=cells, metadata=metadata)
    nbformat.validate(nb)
    return nb


def render() -> str:
    return nbformat.writes(build())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed notebook is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not NOTEBOOK.exists() or NOTEBOOK.read_text() != text:
            sys.exit(f"{NOTEBOOK} is stale: run `make notebook-build`")
        print(f"{NOTEBOOK.name} is up to date")
        return
    NOTEBOOK.write_text(text)
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    main()
