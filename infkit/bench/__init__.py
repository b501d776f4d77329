"""The throughput test and the latency test behind `./run.sh` (`--help` lists the options).

The pipeline, one module a stage, driven by one frozen config.Config:
  cli.py       command line -> Config
  setup.py     the models (int8 draft head, --compile), the Config fitted to their block size
  measure.py   one test: warm-ups, then the methods take turns sample by sample (methods.py)
  probes.py    prefill alone, the always-agreeing draft, a decode step against the bandwidth
  machine.py   how busy the machine was while each test ran
  analyse.py   medians, spreads, output checks, every ratio with its range, what is noise
  pipeline.py  runs those stages in order
  report.py    the printed tables and the JSON summary (its type: summary.Summary)
"""

from .main import main

__all__ = ["main"]
