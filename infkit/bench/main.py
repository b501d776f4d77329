"""./run.sh: parse, set up, measure, analyse, report."""

import sys

import torch

from .. import corpus
from . import cli, machine, pipeline, report, setup


def main(argv=None) -> int:
    load_before = machine.load_average()  # before this run adds its own threads
    config = cli.parse(argv)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if config.with_hf:
        import transformers

        transformers.logging.set_verbosity_error()
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
