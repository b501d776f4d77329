"""What one run of the benchmark measures: the methods, the two tests and their workloads, and
the limits that decide when a figure is noise. Built once from the command line (cli.py) into a
frozen Config that every later stage reads."""

from dataclasses import dataclass, replace

METHODS = ("naive", "kv", "speculative", "hf", "hf_assisted", "kv_sampled", "speculative_sampled")
LABELS = {
    "naive": "generate (naive)",
    "kv": "generate_kv",
    "speculative": "generate_speculative",
    "hf": "transformers generate",
    "hf_assisted": "transformers assisted",
    "kv_sampled": "generate_kv, T>0",
    "speculative_sampled": "speculative, T>0",
    "agreeing": "speculative, always-agreeing draft",
}

SPECULATIVE = ("speculative", "hf_assisted", "speculative_sampled")  # a few rounds of warm-up

# The two tests. Throughput: long prompts at batch sizes >= 1, where the KV cache's gain over
# naive (which re-reads the whole context for every token) is large and batching pays; the
# speculative row at batch 1 gives the prefill-inclusive figure on long prompts. Latency: one
# request with a short prompt and a generation several times longer, what speculative decoding
# is for (its rounds shorten the generation, never the prompt's prefill).
TESTS = ("throughput", "latency")
TEST_METHODS = {
    "throughput": ("naive", "kv", "speculative", "hf"),
    "latency": ("kv", "speculative", "hf", "hf_assisted", "kv_sampled", "speculative_sampled"),
}
# A test runs only with something to compare generate_kv with: these, as far as not skipped.
TEST_NEEDS = {"throughput": ("naive", "hf"), "latency": ("speculative", "hf_assisted", "speculative_sampled")}
# Whose greedy output each method must equal, in order of preference, within its own test:
# naive generate where it ran, else an independent implementation on the same weights.
REFERENCES = {
    "kv": ("naive", "hf"),
    "speculative": ("naive", "kv"),
    "hf": ("naive", "kv"),
    "hf_assisted": ("naive", "kv"),
}
WARMUP_PROMPT = 32  # tokens of prompt in each method's warm-up call
LATENCY_NEW_TOKENS = 96  # the latency test's default (3x its prompt), fitted to smaller models' block_size

# When a figure is noise. A ratio is unstable when its samples' ratios span more than
# SPREAD_LIMIT of its value, or when its test ran on a busy machine: other programs used more
# than OTHERS_LIMIT of all cores' time during it, or, where that share cannot be measured (no
# /proc/stat), the 1-minute load average before the run exceeded LOAD_LIMIT per core.
SPREAD_LIMIT = 0.2
OTHERS_LIMIT = 0.1
LOAD_LIMIT = 0.5


@dataclass(frozen=True)
class Workload:
    """One test's workload: what is generated, at which batch sizes, how many timed samples."""

    test: str
    methods: tuple[str, ...]  # the methods this test times (skipped ones removed)
    batch_sizes: tuple[int, ...]
    prompt_len: int
    new_tokens: int
    samples: int  # timed samples per method at batch 1
    batch_samples: int  # at batch sizes above 1 (each covers B prompts)
    naive_samples: int
    naive_batch_sizes: tuple[int, ...]
    hf_batch_sizes: tuple[int, ...]  # where transformers generate is timed

    def runs_at(self, method: str, batch: int) -> bool:
        """Whether `method` is timed at `batch`: speculative decoding is batch 1 only; the two
        baselines only at the batch sizes chosen for them."""
        if method not in self.methods:
            return False
        if method == "naive":
            return batch in self.naive_batch_sizes
        if method == "hf":
            return batch in self.hf_batch_sizes
        return batch == 1 or method == "kv"

    def samples_of(self, method: str, batch: int) -> int:
        """The naive baseline is by far the slowest, so it gets fewer samples, and so do batches
        above 1, whose every sample already covers B prompts."""
        n = min(self.samples, self.batch_samples) if batch > 1 else self.samples
        return min(n, self.naive_samples) if method == "naive" else n

    def as_json(self) -> dict:
        return dict(
            test=self.test,
            methods=list(self.methods),
            batch_sizes=list(self.batch_sizes),
            prompt_len=self.prompt_len,
            new_tokens=self.new_tokens,
            samples=self.samples,
            batch_samples=min(self.samples, self.batch_samples),
            naive_samples=min(self.samples, self.naive_samples),
            naive_batch_sizes=[B for B in self.batch_sizes if self.runs_at("naive", B)],
            hf_batch_sizes=[B for B in self.batch_sizes if self.runs_at("hf", B)],
        )


@dataclass(frozen=True)
class Config:
    impl: str
    model: str | None
    draft: str | None
    pair: str
    device: str
    num_speculative: int
    draft_head: str
    compile: bool
    threads: int | None
    debug: bool
    json: str | None
    seed: int
    temperature: float | None
    agreeing: bool  # time the always-agreeing draft (the latency test's ceiling)
    with_hf: bool  # transformers is importable and one of its methods is wanted
    workloads: tuple[Workload, ...]  # the tests that run, in order
    command: str
    fit_latency: bool = False  # the latency test's new tokens are the default: fit them to the model
    full_workload: bool = False  # keep the default workload on a busy machine (plan.busy_workload)

    def workload(self, test: str) -> Workload | None:
        return next((w for w in self.workloads if w.test == test), None)

    def with_latency_tokens(self, new_tokens: int) -> "Config":
        """The same run with the latency test generating `new_tokens` (fitted to block_size)."""
        fitted = tuple(
            replace(w, new_tokens=new_tokens) if w.test == "latency" else w for w in self.workloads
        )
        return replace(self, workloads=fitted)
