"""./run.sh: parse, set up, measure, analyse, report."""

import sys

import torch

from .. import corpus, fixtures
from . import cli, machine, pipeline, plan, report, setup


def pick_threads(config) -> tuple[int, str, float | None]:
    """(threads, why, other programs' cores or None): --threads when given, else one per free
    core, measured before this run adds its own threads."""
    others = plan.others_cores_now()  # 0.5 s; on cuda too, where torch still runs CPU threads
    if config.threads:
        return (
            config.threads,
            f"{config.threads} thread{'s' if config.threads > 1 else ''} (--threads)",
            others,
        )
    threads, why = plan.choose_threads(machine.cores(), others)
    return threads, why, others


def _estimate(config, threads: int) -> float | None:
    """The wall-time estimate, from the command line alone: the reference run is the default
    command line on the default pair, whose block size fixtures.SHAPES gives."""
    if not plan.covered(config):
        return None
    block_size = fixtures.SHAPES[fixtures.PAIRS[config.pair].target]["block_size"]
    try:
        fitted = setup.fit_to_model(config, block_size, quiet=True)
    except SystemExit:  # a workload that does not fit: the run stops with the message later
        return None
    reference = setup.fit_to_model(cli.parse([]), block_size, quiet=True)
    return plan.estimate_seconds(fitted, threads, reference)


def main(argv=None) -> int:
    load_before = machine.load_average()  # before this run adds its own threads
    config = cli.parse(argv)
    threads, why, others = pick_threads(config)
    torch.set_num_threads(threads)
    warning = plan.busy_warning(others, machine.cores()) if config.device == "cpu" else None
    config, smaller = plan.busy_workload(config, busy=warning is not None)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if config.with_hf:
        import transformers

        transformers.logging.set_verbosity_error()
    # before the models load (a minute for the large ones): what this run will use and cost
    print(f"threads: {why}")
    if smaller:
        print(smaller)
    print(plan.estimate_line(_estimate(config, threads)))
    if warning:
        print(warning)
    sys.stdout.flush()
    torch.manual_seed(config.seed)
    models, draft_head = setup.prepare_models(config)
    config = setup.fit_to_model(config, models.target.config.block_size)
    _, source = corpus.corpus_tokens()
    print(report.header(config, models, draft_head, source), flush=True)

    measured = pipeline.measure_all(models, config, load_before)
    analysis = pipeline.analyse_all(measured, config)
    print()
    print(report.text(measured, analysis))
    if config.json:
        report.write_json(config.json, report.summary(config, models, draft_head, source, measured, analysis))
        print(f"\nwrote {config.json}")
    return 0
