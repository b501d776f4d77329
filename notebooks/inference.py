# The Colab notebook's source, in jupytext's "percent" format: each `# %%` line starts a cell
# (`# %% [markdown]` a text cell, its lines commented), `tags=[...]` is the cell's tag. Edit this
# file, never notebooks/inference.ipynb; `make notebook-build` writes the .ipynb from it
# (staff/build_notebook.py) and tests/test_notebook.py fails while the two differ.

# %% [markdown] tags=["title"]
# # Fast GPT-2 inference: a KV cache and speculative decoding
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/YOUR-ORG/inference-kit/blob/main/notebooks/inference.ipynb)
#
# This notebook is your workbench for the implementation part. You write six pieces in
# `model.py` (the only file you hand in); the notebook checks each one as you go, measures the
# speed of your code with the same benchmark as `./run.sh`, plots it, and ends with what to
# upload to Gradescope.
#
# How to work:
# 1. In Colab, choose **Runtime > Change runtime type > T4 GPU** *before* anything else, then run
#    the set-up cell. Changing the runtime later deletes every file of this one: if you switch
#    after you have started, download `model.py` first (last section), and upload it again with
#    `handout.zip` when the set-up cell asks.
# 2. Open `model.py` from the Files pane (double-click it), fill in one `TODO(...)` stub, save
#    (Ctrl+S), and run that piece's check cell. Every check imports `model.py` afresh, so you
#    never need to restart the runtime after an edit.
# 3. **Runtime > Run all** stops at the first piece that is not done yet, with a short message
#    saying what is missing.
#
# The checks work on a CPU runtime too; only the speed figures need the T4 to mean anything.
# Colab deletes files when the runtime is recycled: download `model.py` often (last section),
# or keep the kit in Google Drive (see `KIT_DIR` in the set-up cell).


# %% [markdown] tags=["setup-intro"]
# ## 0. Set-up
#
# The next cell finds the kit, or fetches it in Colab: upload `handout.zip` (from the course
# page) when it asks (with your saved `model.py` alongside, if you have one), or drop it in the
# Files pane first, or set `HANDOUT_URL` to a git URL your staff gave you. It then moves into the
# kit's folder and, in Colab, installs only the packages Colab lacks: what Colab already has in a
# recent enough version (PyTorch's CUDA build above all) is kept as it is, and the cell prints
# one line saying what it kept and installed. Run it once per session.


# %% tags=["setup"]
import os
import subprocess
import sys
import zipfile
from pathlib import Path

HANDOUT_URL = ""  # a git URL of the handout; leave empty to upload handout.zip instead
CONTENT = Path("/content")  # Colab's working folder
# Where the kit goes in Colab. CONTENT / "drive/MyDrive/inference-kit" keeps your work in Drive.
KIT_DIR = CONTENT / "inference-kit"

# Deterministic cuBLAS, which DEBUG mode needs on a GPU, must be configured before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
IN_COLAB = "google.colab" in sys.modules


class SetupStop(Exception):
    """Ends this cell with its message alone (Jupyter shows no traceback for it)."""

    def _render_traceback_(self):
        return str(self).splitlines()


def find_kit():
    for folder in (Path.cwd(), Path.cwd().parent, KIT_DIR):
        if (folder / "infkit").is_dir() and (folder / "run.sh").is_file():
            return folder.resolve()
    return None


def uploaded_files():
    """handout.zip from the Files pane, else from the upload dialog: {name: path}."""
    if (CONTENT / "handout.zip").exists():
        return {"handout.zip": CONTENT / "handout.zip"}
    from google.colab import files

    print("Choose handout.zip to upload (and your saved model.py with it, if you have one).")
    names = list(files.upload())  # saved in the working folder; [] if the dialog was cancelled
    if not names:
        raise SetupStop(
            "No file was uploaded. Run this cell again and choose handout.zip from the course page."
        )
    return {name: Path.cwd() / name for name in names}


def unpack_handout(uploads):
    zips = [path for name, path in uploads.items() if name.lower().endswith(".zip")]
    if not zips:
        raise SetupStop(
            f"You uploaded {', '.join(uploads)}, not handout.zip. Run this cell again and choose "
            "handout.zip (the whole kit, from the course page); add your model.py in the same dialog."
        )
    zip_path = zips[0]
    if not zipfile.is_zipfile(zip_path):
        raise SetupStop(
            f"{zip_path.name} is not a readable zip. Download handout.zip again and re-run this cell."
        )
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        if not {"inference-kit/run.sh", "inference-kit/infkit/__init__.py"} <= names:
            raise SetupStop(
                f"{zip_path.name} is not the handout (it has no inference-kit/ folder with run.sh and infkit/). "
                "Download handout.zip from the course page and run this cell again."
            )
        archive.extractall(KIT_DIR.parent)
    if KIT_DIR.name != "inference-kit":
        (KIT_DIR.parent / "inference-kit").rename(KIT_DIR)
    saved = [path for name, path in uploads.items() if name.startswith("model") and name.endswith(".py")]
    if saved:
        (KIT_DIR / "model.py").write_bytes(saved[0].read_bytes())
        print(f"your {saved[0].name} is now {KIT_DIR / 'model.py'}")


if find_kit() is None and IN_COLAB and str(KIT_DIR).startswith(str(CONTENT / "drive")):
    from google.colab import drive

    try:
        drive.mount(str(CONTENT / "drive"))
    except Exception as e:
        raise SetupStop(
            f"Google Drive was not mounted ({e}). Run this cell again and allow access."
        ) from None
if find_kit() is None and IN_COLAB:
    if HANDOUT_URL:
        clone = ["git", "clone", "-q", "--depth", "1", HANDOUT_URL, str(KIT_DIR)]
        done = subprocess.run(clone, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise SetupStop(
                f"git could not clone HANDOUT_URL ({last}). Check the URL and run this cell again."
            )
    else:
        unpack_handout(uploaded_files())

KIT = find_kit()
if KIT is None:
    raise SetupStop("Cannot find the kit (a folder with infkit/ and run.sh). Check HANDOUT_URL or the zip.")
if IN_COLAB and ((KIT / "solution" / "model.py").exists() or (KIT / "autograder").is_dir()):
    raise SetupStop(
        f"{KIT} is the course staff's kit, not the student handout: use the handout.zip (or the "
        "repository) your course gave you."
    )
os.chdir(KIT)
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

if IN_COLAB:
    from infkit import requirements

    requirements.ensure()  # keeps what Colab has when it is recent enough; one line says what
print(f"kit folder: {KIT}")


# %% tags=["env"]
import matplotlib.pyplot as plt
import torch

from infkit import notebook as nb

ENV = nb.detect()
WORK = nb.workload(ENV)
MODEL_PATH = nb.model_path()
print(ENV.describe())
print(f"model.py under test: {MODEL_PATH}")
if ENV.device == "cuda":
    print(f"GPU: {torch.cuda.get_device_name()}")


# %% [markdown] tags=["debug"]
# ## 1. DEBUG mode, and why exact comparisons need it
#
# `model.py` has a switch at the top, `DEBUG`. With `DEBUG = True` (or `set_debug(True)`) the
# model runs in fp32 with deterministic kernels, no TF32 and an explicit attention; then a
# cached run and an uncached run add the same numbers in nearly the same order, and greedy
# outputs match token for token. With `DEBUG = False` the fast path takes over
# (`scaled_dot_product_attention`, 16-bit autocast on the GPU: fp16 on a T4, bf16 on Ampere and
# newer): faster, but the two runs round
# differently, so an exact match is no longer expected.
#
# The checks below always load your file in DEBUG mode, whatever the flag says. On a GPU,
# deterministic cuBLAS also needs the environment variable
# `CUBLAS_WORKSPACE_CONFIG=:4096:8` to be set **before** CUDA starts; the set-up cell does that.
# If you see an error that mentions `CUBLAS_WORKSPACE_CONFIG`, restart the runtime and run the
# set-up cell first. In a terminal: `export CUBLAS_WORKSPACE_CONFIG=:4096:8`.


# %% [markdown] tags=["kv-intro"]
# ## 2. The KV cache, one piece at a time
#
# Each cell runs the check for one piece: the very function the public tests and the
# autograder call (the autograder adds hidden seeds and shapes). It builds small random-weight
# GPT-2s, computes the right answer with the plain `forward()` or the given `generate()`, and
# compares. A failure says what differs and where to look.
#
# ### 2.1 `buffers`: `CausalSelfAttention.init_kv_cache`
# Register one buffer `kv_cache` of shape `(2, batch_size, n_head, max_seq_len, head_dim)`
# (keys at index 0, values at 1), zeros, `persistent=False`; set `seq_pos = 0`.


# %% tags=["check-buffers"]
nb.check("buffers")


# %% [markdown] tags=["prefill-intro"]
# ### 2.2 `prefill`: fill the cache in `CausalSelfAttention.forward`
# When `enable_kv` is set, the forward pass over the prompt also writes its keys and values
# into the cache and sets `seq_pos` to the prompt length; its output must not change.


# %% tags=["check-prefill"]
nb.check("prefill")


# %% [markdown] tags=["decode-intro"]
# ### 2.3 `attn_decode` and `gpt_decode`: the decode path
# `CausalSelfAttention.decode(x)` appends the new tokens' keys and values after `seq_pos` and
# attends over everything cached (new token *i* sees the cache and new tokens 0..*i*).
# `GPT.decode(idx)` does the same for the whole model; the new tokens sit at positions
# `kv_pos, kv_pos + 1, ...`, which matters for the position embedding.


# %% tags=["check-attn_decode"]
nb.check("attn_decode")


# %% tags=["check-gpt_decode"]
nb.check("gpt_decode")


# %% [markdown] tags=["generate_kv-intro"]
# ### 2.4 `generate_kv`: prefill once, then one decode per token
# Greedy (`top_k=1`) output must equal the given `generate()` exactly, and the model must see
# the prompt once and then one token per step.


# %% tags=["check-generate_kv"]
nb.check("generate_kv")


# %% [markdown] tags=["demo-intro"]
# ### See it work
# Your `generate_kv` next to the naive `generate`, on real GPT-2 when the GPU and the network
# are there (otherwise on a random-weight stand-in, whose text is gibberish by design).


# %% tags=["demo"]
from infkit import fixtures, tokenizer

student = nb.load(debug=False)
prompt = tokenizer.encode("The whale surfaced beside the ship, and the captain")
idx = torch.tensor([prompt], device=ENV.device)
with nb.student_code("the demo"), torch.no_grad():
    if ENV.real_weights:
        demo_model = student.GPT.from_pretrained("gpt2").to(ENV.device).eval()
    else:
        demo_model = fixtures.make_pair(student, "small")[1]
    cached = demo_model.generate_kv(idx, 24, top_k=1)
    naive = demo_model.generate(idx, 24, top_k=1)
print(repr(tokenizer.decode(cached[0, len(prompt) :].tolist())))
print("same tokens as generate():", torch.equal(cached, naive), "(outside DEBUG a late difference is fine)")


# %% [markdown] tags=["spec-intro"]
# ## 3. Speculative decoding
#
# ### 3.1 `speculative`: `GPT.generate_speculative`
# In rounds: the draft model proposes `num_speculative` tokens; this model scores all of them in
# **one** pass; keep the drafted tokens while they equal this model's choice, and at the first
# difference keep this model's token instead. Greedy output must equal this model's own
# `generate()` whatever the draft proposes: the check tries a good draft, a draft that never
# agrees, and a perfect one (which must take few passes of the big model).


# %% tags=["check-speculative"]
nb.check("speculative")


# %% [markdown] tags=["public-tests-intro"]
# ### All public tests at once
# The handout's `tests_public/` run the same checks through pytest, as the autograder does.


# %% tags=["public-tests"]
nb.public_tests()


# %% [markdown] tags=["bench-intro"]
# ## 4. The speed test: `./run.sh`
#
# The next cell runs the benchmark behind `./run.sh` on your `model.py` and prints the command,
# so you can repeat it in a terminal (in Colab, `!python -m infkit.bench ...`, which skips the
# virtual environment that `./run.sh` would build first). Prompts are windows of a public-domain novel; it times
# the naive `generate`, your `generate_kv` and your `generate_speculative`, and compares them
# with the transformers library's own generation. On a GPU it uses the released `gpt2-large`
# weights with `gpt2` as the draft; the course's T4 figures, what those weights give on a T4 (to
# compare with, not graded), are **more than 10x** the naive throughput with the KV cache and
# about **2x** lower latency with speculative decoding. On a CPU runtime it uses tiny
# random-weight stand-ins instead and shows only the headline figures: they say that your code
# runs and agrees with the naive loop, not how fast it is. Points come only from the
# autograder's own speed tests (README, "What the autograder does"). On a T4 this section takes several
# minutes, most of it loading the weights for each run.
#
# Outside DEBUG the benchmark uses the fast path; the checks above are what prove correctness.


# %% tags=["bench"]
RUN = nb.bench(quiet=not ENV.real_weights, **WORK["run"])
print()
print(nb.speed_summary(RUN, ENV))


# %% [markdown] tags=["batch-intro"]
# ### Throughput against batch size
# The naive loop re-reads the whole sequence for every token; the cache reads each token once.
# A bigger batch shares every weight read across more rows, so throughput climbs until the
# GPU's arithmetic, not its memory, is the limit (compare with your answers to the written
# part). Shorter sequences than `run.sh` keep this quick; change `WORK["batch"]` to try others.


# %% tags=["batch-sweep"]
BATCH = nb.bench(quiet=True, **WORK["batch"])
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
plt.show()


# %% [markdown] tags=["spec-sweep-intro"]
# ### Speculative decoding against `num_speculative`
# More drafted tokens per round means fewer passes of the big model when the draft is right,
# and more wasted draft work when it is wrong. Where is the best `num_speculative` for this
# pair, and how does it compare with your answer to question 2.3.3? The dotted line is your loop
# with a draft that always agrees, at the real draft's cost: the best any draft could do here.
# The gap to it is what disagreement costs; the gap between it and zero is the prefill and the
# verify passes, which no draft removes.


# %% tags=["spec-sweep"]
SPEC = nb.sweep("num_speculative", WORK["num_speculative"], **WORK["spec"])
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
    )


# %% [markdown] tags=["sampling"]
# ## 5. Optional: speculative sampling with temperature > 0
#
# Greedy speculative decoding keeps a drafted token only when it *is* the big model's argmax.
# With sampling there is no single right token, so "agree" needs a new meaning. The rule
# (Leviathan et al. 2023; Chen et al. 2023): with the draft's distribution q and the target's p at
# the same position, keep a drafted token x with probability min(1, p(x)/q(x)); at the first
# rejection draw the replacement from max(0, p - q), renormalised; if all k are kept, draw one
# more token from p. Every emitted token is then distributed exactly as if the big model had
# sampled alone. The draft only changes *how fast*, never *what*.
#
# This is the optional piece `GPT._accept_sampled` in `model.py` (0 points unless your staff say
# otherwise). The cell below measures the acceptance rate against temperature on the tiny pair,
# and runs the statistical check the autograder uses: a chi-square test of 2,000 seeded
# speculative runs against the target's exact distribution over the next two tokens of a
# five-token-vocabulary model. Notice that acceptance need not fall with temperature: a higher
# temperature flattens p and q alike, and two flat distributions overlap more. The rates come
# from your `spec_stats` (the `generate_speculative` docstring), or are estimated from the big
# model's passes where it is missing. Skipping the piece is fine: while `_accept_sampled` is the
# stub, `generate_speculative` at any temperature > 0 raises `NotImplementedError` naming it, and
# this cell says so.


# %% tags=["sampling-run"]
from infkit import sampling_check

module = nb.load(MODEL_PATH, debug=False)
try:
    with nb.student_code("speculative sampling"):
        rates = nb.acceptance_vs_temperature(module, temperatures=(0.0, 0.3, 0.7, 1.0, 1.5, 2.0))
        verdict = sampling_check.check_sampling(module)
except nb.NotDone as e:
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
    )


# %% [markdown] tags=["submit"]
# ## 6. Submitting to Gradescope
#
# Two uploads:
# - **Code**: your `model.py`, that one file, under that name. The autograder imports it, runs
#   the public checks plus hidden ones (other seeds and shapes) and the speed test. Before you
#   upload, run this notebook top to bottom: every check cell should print `PASS`.
# - **Written part**: a PDF made from `written/template.tex` (Overleaf, or `pdflatex`).
#
# The next cell downloads `model.py` in Colab (elsewhere it prints where the file is).


# %% tags=["download"]
if ENV.in_colab:
    from google.colab import files

    files.download(str(MODEL_PATH))
else:
    print(f"upload this file: {MODEL_PATH}")
