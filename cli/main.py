"""`keras-sisa`: fit, inspect and evaluate SISA runs from the shell.

Every command parses its options and calls the Python API; bad input ends in one
`Error: ...` line and exit code 2.
"""

from __future__ import annotations

import errno
import json
import re
import sys

import click

from keras_sisa import data as sources
from keras_sisa.classifier import SISAClassifier, load
from keras_sisa.export import FORMATS, QUANTIZATIONS
from keras_sisa.errors import ExportError, InputError, UnsupportedVersion
from keras_sisa.models import default_cnn
from keras_sisa.parallel import BACKENDS, Execution
from keras_sisa.manifest import Status
from keras_sisa.store import Store
from keras_sisa.config import TrainingConfig


class Commands(click.Group):
    """A click group that prints our errors as one line on stderr: exit 2 for bad input,
    1 for an export that failed its checks, a moved TensorFlow internal or a full disk."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (InputError, ExportError, UnsupportedVersion) as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2 if isinstance(error, InputError) else 1)
        except Exception as error:
            fault = storage_fault(error)
            if fault is None:
                raise
            click.echo(f"Error: {fault[1]}", err=True)
            sys.exit(fault[0])


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_fault(error: Exception) -> tuple[int, str] | None:
    """(exit code, one line) for a disk that is full or not writable, else None.

    A full disk is the machine's fault (exit 1): what was written stays consistent, so the
    same command finishes the job once space is freed. A read-only or forbidden path is
    the user's choice of place (exit 2)."""
    import tensorflow as tf

    if isinstance(error, OSError):
        code, where = error.errno, f"{error.filename}: {error.strerror}" if error.filename else str(error)
    elif isinstance(error, tf.errors.ResourceExhaustedError) and "No space left" in str(error):
        code, where = errno.ENOSPC, error.message
    elif isinstance(error, tf.errors.PermissionDeniedError):
        code, where = errno.EACCES, error.message
    else:
        return None
    if code in NO_SPACE:
        return 1, (f"The disk is full ({where}). Free space, then run the same command again: an "
                   "interrupted fit resumes and an interrupted forget finishes from where they stopped.")
    if code in NOT_WRITABLE:
        return 2, f"Cannot write there ({where}). Choose a directory on a writable filesystem."
    return None


@click.group(cls=Commands)
@click.version_option(package_name="keras-sisa")
def main() -> None:
    """Exact machine unlearning for Keras image classifiers (SISA ensembles)."""


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"Expected --image-size as HxW, e.g. 32x32, got {text!r}.") from None
    if height < 1 or width < 1:
        raise InputError(f"Expected a positive --image-size, got {text!r}.")
    return height, width


def positive(ctx, param, value):
    if value is not None and value < 1:
        raise InputError(f"Expected --{param.name.replace('_', '-')} to be 1 or more, got {value}.")
    return value


def parse_epochs(text: str, option: str = "--epochs") -> int | list[int] | None:
    """"auto" (until held-out data stops improving), "3", or a schedule by slice position
    whose last entry repeats: "2,2,2,1"."""
    if str(text).strip() == "auto":
        return None
    entries = [e.strip() for e in str(text).split(",")]
    if not all(e.isdigit() and int(e) >= 1 for e in entries):
        raise InputError(f"Expected {option} to be auto, 1 or more, or a comma-separated list of such "
                         f"numbers (one per slice, the last repeats), got {text}.")
    return int(entries[0]) if len(entries) == 1 else [int(e) for e in entries]


def epoch_schedule(ctx, param, value):
    return parse_epochs(value, f"--{param.name.replace('_', '-')}")


def execution_options(command):
    """--workers, --backend and --ray-address: where the components of a fit or forget train."""
    command = click.option("--ray-address", default=None,
                           help="Ray cluster to join with --backend ray (default: a local Ray runtime).")(command)
    command = click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True,
                           help="Train components in local processes or as Ray tasks.")(command)
    return click.option("--workers", default=1, show_default=True, type=int, callback=positive,
                        help="Local processes training components side by side.")(command)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="Print only the summary line.")


def output_options(command):
    """--quiet and --tensorboard: what a training command shows and logs."""
    command = click.option("--tensorboard", default=None, metavar="DIR",
                           help="Write TensorBoard logs of every slice to DIR/<component>/<slice>.")(command)
    return quiet_option(command)


def verbosity(quiet: bool, logged: int) -> int:
    """Keras's verbose level for a command: 0 with --quiet, 1 (one progress bar over the
    slices) on a terminal, else `logged`."""
    return 0 if quiet else 1 if sys.stdout.isatty() else logged


def tensorboard_callbacks(directory: str | None) -> tuple:
    if directory is None:
        return ()
    from keras_sisa.callbacks import SliceTensorBoard

    return (SliceTensorBoard(directory),)


def parse_tiers(text: str | None) -> list[float] | None:
    """`--owner-tiers`: comma-separated shares, or "none"."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"Expected --owner-tiers as shares like 0.25,0.1,0.05 or 'none', got {text!r}.") from None


def parse_only(text: str | None) -> str | None:
    """--only plan, gate or expert:K (also expert-K), as a component name or "plan"."""
    if text is None or text in ("plan", "gate"):
        return text
    kind, _, number = text.replace("-", ":").partition(":")
    if kind != "expert" or not number.isdigit():
        raise InputError(f"Expected --only plan, gate or expert:K (K a shard number), got {text!r}.")
    return f"expert-{int(number)}"


@main.command()
@click.option("--out", required=True, help="New directory for the run.")
@click.option("--dataset", default=None, help="fashion_mnist (default) or tfds:NAME.")
@click.option("--data-dir", default=None, help="Folder of class subfolders of images.")
@click.option("--test-dir", default=None, help="Test folder for --data-dir (default: hold out --test-split).")
@click.option("--test-split", default=0.2, show_default=True, type=float)
@click.option("--image-size", default=None, help="Resize --data-dir images to HxW (default: the most common size).")
@click.option("--color-mode", type=click.Choice(["grayscale", "rgb"]), default=None,
              help="Convert --data-dir images to this mode (default: the mode most images have).")
@click.option("--npz", default=None, help="npz with x_train, y_train, x_test, y_test[, class_names].")
@click.option("--limit-per-class", type=int, default=None, callback=positive,
              help="Keep the first N training images of each class.")
@click.option("--shards", default=None, type=int, callback=positive,
              help="Shard experts (default: one per class).")
@click.option("--classes-per-slice", default=1, show_default=True, type=int, callback=positive)
@click.option("--class-order", default=None, help="Comma-separated classes to train last (cheapest to forget).")
@click.option("--strategy", type=click.Choice(["class", "random"]), default="class", show_default=True)
@click.option("--grouping", type=click.Choice(["similar", "dealt"]), default="similar", show_default=True,
              help="Put look-alike classes in one shard, or deal classes to the lightest shard.")
@click.option("--owner-tiers", default=None,
              help="Image shares of the slices after each expert's core, smallest owners last "
                   "(default with owners: those of 0.25,0.1,0.05 that hold 750 images or more; "
                   "'none' for no tiers).")
@click.option("--slices", default=4, show_default=True, type=int, callback=positive,
              help="Slices per shard with --strategy random.")
@click.option("--epochs", default="auto", show_default=True, callback=epoch_schedule,
              help="Epochs per expert slice: auto (until its held-out share stops improving), a number, "
                   "or one number per slice position (2,2,1: the last repeats).")
@click.option("--gate-epochs", default="auto", show_default=True,
              callback=epoch_schedule, help="Epochs per gate slice, like --epochs; fewer epochs on late "
                                            "slices make forgets cheaper.")
@click.option("--tier-epochs", default=str(TrainingConfig.tier_epochs), show_default=True, callback=epoch_schedule,
              help="Epochs of each owner-tier slice (the smallest owners' images, trained last) where the "
                   "other slices train auto; auto: those too.")
@click.option("--anneals", default=TrainingConfig.anneals, show_default=True, type=int,
              help="Plateaus of an auto slice that lower its learning rate from its best weights before "
                   "the next stops it: more accurate, and after a forget closer to a retrain; slower.")
@click.option("--anneal-factor", default=TrainingConfig.anneal_factor, show_default=True, type=float,
              help="What each anneal multiplies the learning rate by.")
@click.option("--replay-ratio", default=TrainingConfig.replay_ratio, show_default=True, type=float,
              help="Replayed samples per new sample in an expert's slice.")
@click.option("--gate-replay-ratio", default=TrainingConfig.gate_replay_ratio, show_default=True, type=float)
@click.option("--tier-replay-ratio", default=TrainingConfig.tier_replay_ratio, show_default=True, type=float,
              help="Replayed samples per new sample in an owner-tier slice; lower makes forgetting a person "
                   "cheaper.")
@click.option("--tier-ema", default=TrainingConfig.tier_ema, show_default=True, type=float,
              help="Momentum of the moving average each owner-tier slice ends on; 0: off. It keeps the "
                   "accuracy that the tiers' short fits with little replay would cost.")
@click.option("--check-ema", default=TrainingConfig.check_ema, show_default=True, type=float,
              help="Momentum of a moving average of the weights that adaptive slices are checked on and "
                   "keep; 0: off.")
@click.option("--replay", type=click.Choice(["uniform", "loss"]), default="uniform", show_default=True)
@click.option("--batch-size", default=TrainingConfig.batch_size, show_default=True, type=int, callback=positive,
              help="Batch size of the experts.")
@click.option("--gate-batch-size", default=TrainingConfig.gate_batch_size, show_default=True, type=int,
              callback=positive)
@click.option("--learning-rate", default=TrainingConfig.learning_rate, show_default=True, type=float,
              help="Adam learning rate of the experts.")
@click.option("--gate-learning-rate", default=TrainingConfig.gate_learning_rate, show_default=True, type=float)
@click.option("--gate-ema", default=TrainingConfig.gate_ema, show_default=True, type=float,
              help="Momentum of the moving average of the gate's weights, sampled every 4 batches; 0: off.")
@click.option("--seed", default=TrainingConfig.seed, show_default=True, type=int)
@click.option("--threads", default=None, type=int, callback=positive,
              help="TensorFlow threads of every training process (default: this machine's cores); "
                   "weights are bit-identical only between runs with the same count.")
@click.option("--model", "model_fn", default=None, help="Expert builder as module:function.")
@click.option("--gate-model", "gate_fn", default=None,
              help="Gate builder as module:function (default: the default CNN).")
@execution_options
@output_options
@click.option("--only", default=None,
              help="plan: write data and plan only; gate or expert:K: train that component only "
                   "(one job per component); then run fit once more to finish.")
def fit(out, dataset, data_dir, test_dir, test_split, image_size, color_mode, npz, limit_per_class, shards,
        classes_per_slice, class_order, strategy, grouping, owner_tiers, slices, epochs, gate_epochs, tier_epochs,
        anneals, anneal_factor, replay_ratio, gate_replay_ratio, tier_replay_ratio, tier_ema, check_ema, replay,
        batch_size, gate_batch_size, learning_rate, gate_learning_rate, gate_ema, seed, model_fn, gate_fn, threads,
        workers, backend, ray_address, quiet, tensorboard, only) -> None:
    """Train a SISA ensemble and write the run to --out; run it again to finish an interrupted fit."""
    verbose = verbosity(quiet, logged=2)
    only = parse_only(only)
    execution = Execution(workers, backend, ray_address, callbacks=tensorboard_callbacks(tensorboard))
    if only and (workers > 1 or backend != "local"):
        raise InputError("--only trains in this process; it takes no --workers or --backend.")
    status = Store(out).status()
    if only not in (None, "plan"):
        return train_only(out, status, only, verbose)
    if status == Status.FITTING:
        refuse_other_options(click.get_current_context(), out)
        if only == "plan":
            return click.echo(f"{out} is already planned; train its components with --only.")
        if verbose:
            click.echo(f"Resuming the interrupted fit of {out} from its last slice checkpoints.")
        return fitted_text(load(out).resume(verbose=verbose, execution=execution), out)
    if status != Status.PREPARING:  # a run interrupted while preparing is replaced by this fit
        Store(out).check_new()
    data = sources.load(dataset, data_dir, test_dir, npz, limit_per_class, test_split=test_split,
                        image_size=parse_image_size(image_size), color_mode=color_mode, seed=seed)
    for note in data.notes if verbose else ():
        click.echo(note)
    order = [name.strip() for name in (class_order or "").split(",") if name.strip()]
    sisa = SISAClassifier(out, model_fn or default_cnn, gate_fn or default_cnn, shards=shards,
                          classes_per_slice=classes_per_slice,
                          class_order=sources.class_indices(order, data.class_names),
                          strategy=strategy, grouping=grouping, slices=slices,
                          owner_tiers=parse_tiers(owner_tiers), epochs=epochs,
                          gate_epochs=gate_epochs, tier_epochs=tier_epochs, anneals=anneals,
                          anneal_factor=anneal_factor, replay_ratio=replay_ratio,
                          gate_replay_ratio=gate_replay_ratio, tier_replay_ratio=tier_replay_ratio, tier_ema=tier_ema,
                          check_ema=check_ema, replay=replay, batch_size=batch_size,
                          gate_batch_size=gate_batch_size, learning_rate=learning_rate,
                          gate_learning_rate=gate_learning_rate, gate_ema=gate_ema, seed=seed,
                          threads=threads)
    sisa.prepare(data.x_train, data.y_train, data.class_names, test_data=(data.x_test, data.y_test),
                 sample_ids=data.ids, owners=data.owners, test_owners=data.test_owners)
    if only == "plan":
        return click.echo(f"Planned {len(sisa.plan.components)} components in {out}: "
                          f"{', '.join(c.name for c in sisa.plan.components)}.")
    fitted_text(sisa.resume(verbose=verbose, execution=execution), out)


RUN_OPTIONS = ("shards", "classes_per_slice", "strategy", "grouping", "owner_tiers", "slices")
RECIPE_OPTIONS = ("epochs", "gate_epochs", "tier_epochs", "anneals", "anneal_factor", "replay_ratio",
                  "gate_replay_ratio", "tier_replay_ratio", "tier_ema", "check_ema", "replay", "batch_size",
                  "gate_batch_size", "learning_rate", "gate_learning_rate", "gate_ema", "seed", "threads")


def refuse_other_options(ctx: click.Context, out: str) -> None:
    """An interrupted fit resumes with the options it began with; naming others is refused, not ignored."""
    manifest = Store(out).read_manifest()
    stored = {**{k: manifest.options.get(k) for k in RUN_OPTIONS},
              **{k: getattr(manifest.config, k) for k in RECIPE_OPTIONS},
              "model_fn": manifest.model_fn, "gate_fn": manifest.gate_fn}
    given = {k: parse_tiers(ctx.params[k]) if k == "owner_tiers" else ctx.params[k] for k in stored
             if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    flag = lambda name: {"model_fn": "--model", "gate_fn": "--gate-model"}.get(name, "--" + name.replace("_", "-"))
    differing = [f"{flag(k)} {v} (the run has {stored[k]})" for k, v in given.items() if v != stored[k]]
    if differing:
        raise InputError(f"{out} holds an interrupted fit begun with other options: {'; '.join(differing)}. "
                         f"Rerun `keras-sisa fit --out {out}` without them to finish it, or fit into a new --out.")


def train_only(out: str, status: str | None, name: str, verbose: int) -> None:
    """`fit --only COMPONENT`: trains one component of a planned run, for one job of many."""
    if status not in (Status.FITTING, Status.FITTED):
        raise InputError(f"{out} has no plan yet; run `keras-sisa fit --out {out} ... --only plan` first.")
    if status == Status.FITTED:
        return click.echo(f"{out} is fitted already: nothing to train.")
    load(out).resume(verbose=verbose, only=name)
    click.echo(f"Trained {name} of {out}; run `keras-sisa fit --out {out}` when every component is done.")


def fitted_text(sisa: SISAClassifier, out: str) -> None:
    images = sum(len(e.sample_ids) for e in sisa.plan.experts)
    accuracy = sisa.evaluate()["accuracy"] if sisa.store.exists("data/test.npz") else float("nan")
    click.echo(f"Fitted {len(sisa.plan.components)} components on {images} images of "
               f"{len(sisa.classes)} classes ({sisa.run.manifest.fit_seconds:.1f} s of training, summed "
               f"over components); test accuracy {100 * accuracy:.2f}%. Run: {out}")


json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def show(value, as_json: bool, as_text) -> None:
    """Prints `value` as JSON with --json, otherwise through `as_text(value)`."""
    if as_json:
        click.echo(json.dumps(value, indent=2))
    else:
        as_text(value)


@main.command()
@click.argument("run")
@json_flag
def evaluate(run, as_json) -> None:
    """Accuracy of the run's ensemble on its test set, overall and per class."""
    show(load(run).evaluate(), as_json, evaluation_text)


def evaluation_text(report: dict) -> None:
    click.echo(f"accuracy {100 * report['accuracy']:.2f}% on {report['count']} test images")
    for name, value in report["per_class"].items():
        click.echo(f"  {name:<20} {100 * value:6.2f}%")


@main.command()
@click.argument("run")
@json_flag
def info(run, as_json) -> None:
    """Classes, shards, slices per component, checkpoints, sizes and receipts of a run."""
    show(load(run).info(), as_json, info_text)


def info_text(details: dict) -> None:
    click.echo(f"{details['directory']}: {details['status']}, strategy {details['strategy']}, "
               f"input {tuple(details['input_shape'])}, {details['total_bytes'] / 1e6:.1f} MB")
    click.echo(f"classes: {', '.join(details['classes'])}")
    if details["forgotten"]:
        click.echo(f"forgotten: {', '.join(details['forgotten'])}")
    for c in details["components"]:
        click.echo(f"  {c['name']:<10} {c['samples']:>7} samples, {c['checkpoints']} checkpoints "
                   f"({c['checkpoint_bytes'] / 1e6:.1f} MB), slices {' '.join(c['slices'])}; "
                   f"classes {', '.join(c['classes'])}")
    click.echo("training: " + recipe_text(details["recipe"]["config"]))
    for name, slices in details["recipe"]["slices"].items():
        click.echo(f"  {name:<10} " + ", ".join(slice_text(s) for s in slices))
    costs = sorted(details["expected_forget_seconds"].items(), key=lambda item: item[1])
    click.echo("expected forget training time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in costs))
    owners = details.get("expected_owner_forget_seconds")
    if owners:
        tiers = ", ".join(f"{t:g}" for t in details["owner_tiers"]) or "none"
        click.echo(f"  one owner: median {owners['median']:.1f} s, 90th percentile {owners['p90']:.1f} s, "
                   f"most {owners['max']:.1f} s over {owners['owners']} owners (owner tiers {tiers})")
    pending = details["pending_forget"]
    if pending:
        click.echo(f"  PENDING forget {pending['id']} of {pending['deleted_count']} images"
                   f"{' of ' + ', '.join(pending['classes']) if pending['classes'] else ''} "
                   f"(data purged: {'yes' if pending['purged'] else 'no'}); run `keras-sisa forget "
                   f"{details['directory']}` to finish it")
    for r in details["receipts"]:
        rewound = ", ".join(f"{name} to {step['to_slice']}" for name, step in r["rewound"].items())
        people = owners_text(r.get("owners", 0))
        click.echo(f"  receipt {r['id']} ({r['time']}): forgot {r['deleted_count']} images"
                   f"{' of ' + ', '.join(r['classes']) if r['classes'] else ''}{people} in {r['seconds']:.1f} s"
                   f"{' (finished after an interruption)' if r.get('resumed') else ''}; "
                   f"rewound {rewound}")


def recipe_text(config: dict) -> str:
    epochs = lambda value: "auto" if value is None else value
    tiers = "" if config["tier_epochs"] is None else f"; owner tiers of auto recipes {config['tier_epochs']} epochs"
    if config["tier_replay_ratio"] is not None:
        tiers += f"; owner tiers replay {config['tier_replay_ratio']:g} per new image"
    if config["tier_ema"]:
        tiers += f"; owner tiers end on a weight average (momentum {config['tier_ema']:g})"
    annealing = (f", {config['anneals']} time(s) lowering the learning rate x{config['anneal_factor']:g} first"
                 if config["anneals"] else "")
    averaged = f" (checking a weight average, momentum {config['check_ema']:g})" if config["check_ema"] else ""
    return (f"experts {epochs(config['epochs'])} epochs per slice at batch {config['batch_size']}, "
            f"gate {epochs(config['gate_epochs'])} at batch {config['gate_batch_size']}; auto: until the "
            f"held-out {100 * config['validation_share']:g}% has not improved for {config['patience']} epochs"
            f"{averaged}{annealing}{tiers}")


def slice_text(row: dict) -> str:
    if not row["rounds"]:
        return f"{row['slice']} (nothing to train)"
    steps = f" of {row['steps_per_round']} steps" if row.get("steps_per_round") else ""
    best = f", best {row['best_round']}" if row.get("best_round") else ""
    return f"{row['slice']} ({row['rounds']} rounds{steps}{best}: {row['epochs']:g} epochs)"


@main.command()
@click.argument("run")
@click.option("--class", "classes", multiple=True, help="A class to forget (repeatable).")
@click.option("--samples", "samples_file", type=click.Path(), default=None,
              help="File of sample ids to forget, one per line.")
@click.option("--owner", "owners", multiple=True, help="A person whose images to forget (repeatable).")
@click.option("--owners", "owners_file", type=click.Path(), default=None,
              help="File of owners to forget, one per line.")
@execution_options
@output_options
@click.option("--audit/--no-audit", default=None,
              help="Measure the forget's effect (retained accuracy, membership inference) for the report "
                   "[default: for class forgets].")
def forget(run, classes, samples_file, owners, owners_file, workers, backend, ray_address, quiet, tensorboard,
           audit) -> None:
    """Forget classes, samples and owners exactly, by rewinding the components that held them.

    Without --class, --samples or --owner, finishes a forget that was interrupted."""
    sisa = load(run)
    owners = list(owners) + read_owners(owners_file)
    if not classes and samples_file is None and not owners and sisa.run.manifest.pending_forget is None:
        raise InputError("Nothing to forget: give --class NAME, --owner ID (both repeatable), "
                         "--samples FILE or --owners FILE.")
    receipt = sisa.forget(classes=list(classes), samples=read_ids(samples_file), owners=owners,
                          verbose=verbosity(quiet, logged=0), workers=workers, backend=backend,
                          ray_address=ray_address, audit=audit, callbacks=tensorboard_callbacks(tensorboard))
    if receipt.get("noop"):
        click.echo(receipt["message"])
        return
    rewound = ", ".join(f"{name} to {r['to_slice']}" for name, r in receipt["rewound"].items())
    click.echo(f"Forgot {receipt['deleted_count']} images"
               f"{' of ' + ', '.join(receipt['classes']) if receipt['classes'] else ''}"
               f"{owners_text(len(receipt.get('owners', [])))} in "
               f"{receipt['seconds']['total']:.1f} s; rewound {rewound}. Receipt {receipt['id']}.")


def owners_text(count: int) -> str:
    """" of N owners" for a receipt that forgot owners, else nothing."""
    return f" of {count} owner{'s' if count > 1 else ''}" if count else ""


def read_owners(path: str | None) -> list[str]:
    """Owner ids from a file, one per line; blank lines are skipped, an empty file refused."""
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            owners = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"Cannot read --owners file {path}: {error}; write one owner id per line "
                         "in UTF-8.") from None
    if not owners:
        raise InputError(f"{path} holds no owner id; write one id per line.")
    return owners


def read_ids(path: str | None) -> list[int]:
    """Sample ids from a file, one ASCII whole number per line; blank lines and # comments
    are skipped. A file with no id is refused rather than read as "nothing to forget"."""
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.split("#")[0].strip() for line in f]
    except OSError as error:
        raise InputError(f"Cannot read --samples file {path}: {error.strerror}.") from None
    ids = []
    for number, line in enumerate(lines, 1):
        if line:
            if not re.fullmatch(r"[0-9]{1,18}", line):
                shown = line if len(line) <= 40 else line[:40] + "..."
                raise InputError(f"{path} line {number}: expected a sample id (a whole number 0-9), "
                                 f"got {shown!r}.")
            ids.append(int(line))
    if not ids:
        raise InputError(f"{path} holds no sample id; write one id per line.")
    return ids


@main.command()
@click.argument("run")
@json_flag
def verify(run, as_json) -> None:
    """Prove the run's forgets exact: refit touched components from scratch, compare weights."""
    rows = load(run).verify()
    show(rows, as_json, verification_text)
    if not all(row["identical"] for row in rows):
        sys.exit(1)


def verification_text(rows: list[dict]) -> None:
    if not rows:
        click.echo("No forget has touched any component: nothing to verify.")
    for row in rows:
        verdict = "identical" if row["identical"] else "MISMATCH"
        click.echo(f"  {row['component']:<10} {verdict:<9} stored {row['stored'][:12]} refit "
                   f"{row['refit'][:12]} ({row['seconds']:.1f} s)")


@main.command()
@click.argument("run")
@click.option("--out", required=True, help="New directory for the exported files.")
@click.option("--format", "format_", type=click.Choice(FORMATS), default="both", show_default=True)
@click.option("--quantize", type=click.Choice(QUANTIZATIONS), default="none", show_default=True)
@click.option("--prune", type=float, default=None,
              help="Prune to this sparsity (e.g. 0.8) with a short fine-tune on retained data.")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tune, then int8 conversion.")
@json_flag
def export(run, out, format_, quantize, prune, qat, as_json) -> None:
    """Export the current ensemble as SavedModel and/or TFLite, checked against Keras in LiteRT."""
    report = load(run).export(out, format=format_, quantize=quantize, prune=prune, qat=qat)
    show(report, as_json, export_text(out))


def export_text(out: str):
    def echo(report: dict) -> None:
        for name, scores in report["formats"].items():
            latency = f", {scores['latency_ms']:.2f} ms/image" if "latency_ms" in scores else ""
            click.echo(f"{name}: {scores['bytes'] / 1e6:.2f} MB, agreement {100 * scores['agreement']:.2f}%, "
                       f"accuracy {100 * scores['accuracy']:.2f}%{latency}")
        if report["compression"]:
            c = report["compression"]
            click.echo(f"compressed: sparsity {100 * c['sparsity']:.1f}%, agreement with the ensemble "
                       f"{100 * c['agreement_with_ensemble']:.2f}%")
        click.echo(f"Exported {len(report['labels'])} classes ({report['quantize']}) to {out}")
    return echo


@main.command()
@click.argument("run")
@quiet_option
def repair(run, quiet) -> None:
    """Refit every component whose checkpoint is missing or corrupted, from its last good slice."""
    problems = load(run, check=False).repair(verbose=verbosity(quiet, logged=0))
    click.echo("\n".join(f"repaired: {p}" for p in problems) or f"{run}: every file matches its checksum.")


@main.command()
@click.argument("run")
@click.option("--out", required=True, help="New directory for report.html, its PNG plots and report.json.")
@json_flag
def report(run, out, as_json) -> None:
    """Plot what the model knows and what it forgot: accuracy, confusion, MIA, timeline, plan."""
    figures = load(run).report(out)
    show(figures, as_json, lambda _: click.echo(f"Wrote {out}/report.html with {len(figures['figures'])} "
                                                 f"plots and {out}/report.json."))
