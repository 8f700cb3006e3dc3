"""The options of the benchmarks that measure one plan: shards, gate model and the slices' stopping rule."""

from __future__ import annotations

import argparse

#: Option name, SISAClassifier keyword, type and help; left out, each keeps keras-sisa's default.
OPTIONS = (
    ("--shards", "shards", int, "Shards of the ensemble."),
    ("--gate-model", "gate_fn", str, "Gate builder as module:function."),
    ("--check-steps", "check_steps", int, "Steps between held-out checks of a long slice."),
    ("--validation-cap", "validation_cap", int, "The most images of a class a slice holds out."),
    ("--tier-epochs", "tier_epochs", int, "Epochs of each owner-tier slice."),
    ("--tier-replay-ratio", "tier_replay_ratio", float, "Replayed samples per new one in an owner-tier slice."),
    ("--tier-ema", "tier_ema", float, "Momentum of the weight average an owner-tier slice ends on."),
    ("--check-ema", "check_ema", float, "Momentum of the weight average adaptive slices are checked on."),
    ("--gate-ema", "gate_ema", float, "Momentum of the weight average a fixed-epoch gate slice ends on."),
    ("--anneals", "anneals", int, "Plateaus that lower an adaptive slice's learning rate before it stops."),
    ("--anneal-factor", "anneal_factor", float, "What each anneal multiplies the learning rate by."),
)


def add_to(parser: argparse.ArgumentParser) -> None:
    """Adds the options."""
    for flag, _, kind, text in OPTIONS:
        parser.add_argument(flag, type=kind, default=None, help=f"{text} (default: keras-sisa's)")


def chosen(args: argparse.Namespace) -> dict:
    """The SISAClassifier keyword arguments the options set."""
    values = {keyword: getattr(args, flag[2:].replace("-", "_")) for flag, keyword, _, _ in OPTIONS}
    return {keyword: value for keyword, value in values.items() if value is not None}
