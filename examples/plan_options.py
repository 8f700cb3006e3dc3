"""The `--shards` and `--gate-model` options of the benchmarks that measure one plan."""

from __future__ import annotations

import argparse


def add_to(parser: argparse.ArgumentParser) -> None:
    """Adds the options; left out, each keeps keras-sisa's default."""
    parser.add_argument("--shards", type=int, default=None, help="Shards of the ensemble (default: keras-sisa's).")
    parser.add_argument("--gate-model", default=None, help="Gate builder as module:function (default: keras-sisa's).")


def chosen(args: argparse.Namespace) -> dict:
    """The SISAClassifier keyword arguments the options set."""
    return {k: v for k, v in (("shards", args.shards), ("gate_fn", args.gate_model)) if v is not None}
