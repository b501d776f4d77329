"""The models a run compares, on their device, with the run's settings applied (int8 draft head,
--compile), and the Config fitted to them (the latency test's length to the block size)."""

import sys
from dataclasses import replace

import torch

from .. import bench_models, loading
from .config import LATENCY_NEW_TOKENS, Config


def prepare_models(config: Config):
    """(models, draft head description) for the run."""
    module = loading.load_model_module(config.impl, debug=config.debug)
    models = bench_models.build(module, config.model, config.draft, config.pair, seed=config.seed)
    debug = bool(getattr(module, "DEBUG", False))  # --debug, or the file's own DEBUG = True
    models = bench_models.place(models, config.device, debug, with_hf=config.with_hf)
    draft_head = str(next(models.draft.parameters()).dtype).replace("torch.", "")
    if config.draft_head == "int8" and config.device == "cpu" and not debug:
        draft_head = bench_models.int8_draft_head(models)
    if config.compile:
        compile_decode(module, models, config.device)
    return models, draft_head


def fit_to_model(config: Config, block_size: int, quiet: bool = False) -> Config:
    """Every test's prompt + new tokens within block_size. The latency test's default length is
    shortened to fit a small model (and says so); an explicit length that does not fit stops."""
    latency = config.workload("latency")
    if latency and config.fit_latency and latency.prompt_len + LATENCY_NEW_TOKENS > block_size:
        fitted = block_size - latency.prompt_len
        if fitted < 1:
            sys.exit(f"--latency-prompt-len {latency.prompt_len} leaves no room in block_size {block_size}")
        if not quiet:
            print(f"note: the latency test generates {fitted} tokens, what block_size {block_size} leaves")
        config = config.with_latency_tokens(fitted)
    for w in config.workloads:
        if w.prompt_len + w.new_tokens > block_size:
            prefix = "" if w.test == "throughput" else "latency-"
            names = f"--{prefix}prompt-len + --{prefix}new-tokens"
            sys.exit(
                f"{names} = {w.prompt_len + w.new_tokens} exceeds this model's block_size {block_size}: "
                f"pass smaller ones, e.g. --{prefix}prompt-len {block_size * 3 // 4} "
                f"--{prefix}new-tokens {block_size // 4}"
            )
    return replace(config, fit_latency=False)


def compile_decode(module, models, device: str):
    """Opt-in fast path: torch.compile each model's decode step. Shapes change with the cache
    position, so compile with dynamic shapes; on CPU, freezing lets inductor pre-pack the
    weights for oneDNN (the multi-token verify step is what gains). Compiling takes minutes."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    sys.modules.setdefault(module.__name__, module)  # dynamo re-imports the model's module by name
    # the cache position is a plain int on each attention module: let it stay symbolic,
    # or every new position would compile the step again
    dynamo_config.allow_unspec_int_on_nn_module = True
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 64)
    if not device.startswith("cuda"):
        inductor_config.freezing = True
    for model in {id(models.target): models.target, id(models.draft): models.draft}.values():
        model.decode = torch.compile(model.decode, dynamic=True)
