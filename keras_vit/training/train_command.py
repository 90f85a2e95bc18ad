"""What `python -m keras_vit.train` does once its flags are parsed and checked (`keras_vit.train`).

`main(args)`: joins the job's processes (if any), builds the model or loads
the --init-from checkpoint, sets the distribution, loads the data, then
`run` trains, scores and writes the run's files under --output, resuming
from its checkpoint. Kept apart from the flags so that `--help` and a bad
flag answer without importing Keras.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np

from keras_vit.cli_utils import (
    CLIError,
    Terminated,
    first_line,
    print_error,
    stop_on_signals,
)
from keras_vit.convert.sources import MissingStatisticsError, loading_error
from keras_vit.data import given_data_dir
from keras_vit.data.streaming import UnreadableImageError, first_unreadable
from keras_vit.layers import pair
from keras_vit.model_flags import flag_overrides
from keras_vit.models.presets import get_preset
from keras_vit.models.teachers import load_teacher
from keras_vit.models.vit import build_vit, patch_grid, vit_arguments
from keras_vit.plots import plot_training_curves
from keras_vit.training import pipeline
from keras_vit.training.batches import EvaluationBatches, TrainingBatches, even_batch_size
from keras_vit.training.callbacks import (
    CheckpointError,
    EpochBackup,
    TimeLimit,
    UnmaskedFinish,
    checkpoint_bytes,
    checkpoint_folder,
)
from keras_vit.training.distribute import (
    check_model_fits_mesh,
    distribution,
    mirrored_strategy,
)
from keras_vit.training.finetune import (
    check_fine_tuning_overrides,
    fine_tuning_start,
    freeze_first_blocks,
    layer_decay_multipliers,
    load_pretrained,
)
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.plan import describe_length, plan_learning_rate
from keras_vit.training.processes import (
    agreed_clock,
    check_same_on_every_process,
    join_processes,
    leave,
    process_rows,
    process_share,
    stop_when_a_process_fails,
    sum_over_processes,
    wait_for_every_process,
    writing_alone,
)
from keras_vit.training.recipes import DEFAULT_VALIDATION_SPLIT, MIXED_PRECISION, training_recipe
from keras_vit.training.trainer import make_trainer


def as_float32(model):
    """A float32 copy of a (mixed-precision) ViT, with the same weights."""
    keras.mixed_precision.set_global_policy("float32")
    copy = build_vit(**vit_arguments(model), name=model.name)  # the saved model keeps the trained one's name
    copy.set_weights(model.get_weights())
    return copy


def _callbacks(args, budget, max_epochs, backup_dir, identity=None):
    """`(before_history, after_history, time_limit, unmasked, backup)` callbacks of `pipeline.fit` for these flags;
    `identity`: what the checkpoint records of the run (`_run_identity`); `backup`, the `EpochBackup`, is the
    last of `after_history`.

    Only epoch-end callbacks: batch hooks would make `fit` wait for the
    device after every step (see `keras_vit.training.callbacks`).
    """
    time_limit = TimeLimit(args.time_limit, clock=agreed_clock()) if args.time_limit else None
    unmasked = (
        UnmaskedFinish(args.unmasked_finish, epochs=max_epochs, budget=budget, clocks=[time_limit])
        if args.unmasked_finish
        else None
    )
    before_history = [
        *([unmasked] if unmasked else []),  # before TimeBudget: its plan then counts the slower epochs
        *([budget] if budget else []),  # its learning rate goes into the history
        *([time_limit] if time_limit else []),
    ]
    after_history = []
    if args.ema_momentum is not None:
        # Validate with the averaged weights, which are the ones that get saved.
        # Not swap_on_epoch: it leaves the average in the model after an early
        # stop (--time-limit, NaN), and fit's end then saves the raw weights.
        after_history.append(keras.callbacks.SwapEMAWeights())
    # Last: an epoch is in the history file before a checkpoint says it is done, and its clocks have timed it.
    # Saving weights and optimizer state costs time on a fast GPU: every N epochs.
    backup = EpochBackup(
        str(backup_dir),
        every=args.checkpoint_every,
        delete_checkpoint=False,
        write=process_share()[0] == 0,
        resumable=[unmasked, budget, time_limit],
        run=identity,
        length={"--epochs": args.epochs, "--time-budget": args.time_budget},
    )
    after_history.append(backup)
    return before_history, after_history, time_limit, unmasked, backup


def _batch_shards():
    """The devices a batch is split over (`keras.distribution`'s `batch` axis, or TensorFlow's strategy's
    replicas; 1 without either)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    chosen = keras.distribution.distribution()
    if chosen is None:
        return 1
    return dict(zip(chosen.device_mesh.axis_names, chosen.device_mesh.shape))["batch"]


def _validation(splits, args):
    """`fit`'s validation arguments: the held-out validation split, never the test split (none without one).

    Split over devices, every validation batch must divide by their count: the split's last
    `len % devices` images are left out of validation (said). In a job of several processes, each feeds its
    share of every batch, and the metrics are the whole batch's.
    """
    if splits.x_val is None:
        return {}
    shards = _batch_shards()
    count = len(splits.y_val) - len(splits.y_val) % shards
    if count == 0:
        print(
            f"warning: no validation: the {len(splits.y_val)} validation images are fewer than the {shards} devices "
            "each validation batch is split over",
            flush=True,
        )
        return {}
    if count < len(splits.y_val):
        print(
            f"Validating on {count} of the {len(splits.y_val)} validation images (a multiple of {shards} devices)",
            flush=True,
        )
    processes = process_share()[1]  # a divisor of `shards`: each process holds as many of the batch's devices
    size = even_batch_size(count // shards, max(args.batch_size, 250) // shards) * shards // processes
    rows = process_rows(count)
    images, labels = splits.x_val[rows], splits.y_val[rows]
    if not isinstance(images, np.ndarray):  # streamed from disk: read a batch at a time
        return {
            "validation_data": EvaluationBatches(images, labels, size, readers=_readers(args)),
            "validation_freq": args.validation_freq,
        }
    return {
        "validation_data": ({"images": images, "labels": labels}, labels),
        "validation_freq": args.validation_freq,
        "validation_batch_size": size,
    }


def _readers(args):
    """Threads that read the next batches during the step: --loader-workers with --stream, else none."""
    return args.loader_workers if args.stream else 0


def _load_teacher(args, splits):
    """The frozen teacher of --teacher (None without it); prints what is distilled."""
    if not args.teacher:
        return None
    teacher = load_teacher(args.teacher, tuple(splits.x_train.shape[1:3]), splits.num_classes)
    print(
        f"Distilling {' + '.join(args.teacher)} ({teacher.count_params():,} parameters, "
        f"{args.distillation}, weight {args.distillation_weight})",
        flush=True,
    )
    return teacher


def _error(message, status=2):
    print_error(message)
    return status


def _checkpoint(args, overrides):
    """The pretrained ViT of --init-from with its class names (`finetune.load_pretrained`), after checking that
    the model flags (`overrides`) change only its regularization.

    Raises:
        CLIError: a flag would change its architecture, or it cannot be read, converted or fine-tuned.
    """
    try:
        check_fine_tuning_overrides(overrides)
    except ValueError as error:
        raise CLIError(f"--init-from: {error}") from None
    print(f"Loading the pretrained ViT {args.init_from}", flush=True)
    source = args.init_from
    try:
        pretrained = load_pretrained(source)
        vit_arguments(pretrained.model)
    except MissingStatisticsError:  # train has no --mean / --std: the converter takes them
        raise CLIError(
            f"--init-from {source} does not say its input normalization (no preprocessor_config.json or image "
            f"converter): convert it first with its mean and std, python -m keras_vit.convert {source} OUT.keras "
            "--mean R G B --std R G B (0..1 units; and --num-classes N for a backbone), then --init-from OUT.keras"
        ) from None
    except Exception as error:  # noqa: BLE001 - as python -m keras_vit.convert words it: one line
        raise CLIError(f"--init-from {source}: {loading_error(source, error)}") from None
    return pretrained


def _fine_tuning_model(args, splits, overrides, pretrained):
    """The --init-from checkpoint at the data's size and classes (its head kept, reordered or new by the class
    names: one line says which), its first --freeze-blocks frozen."""
    head = pretrained.head_for(splits.class_names)
    try:
        model = fine_tuning_start(
            pretrained.model, tuple(splits.x_train.shape[1:3]), splits.num_classes, overrides, head=head
        )
        frozen = freeze_first_blocks(model, args.freeze_blocks)
    except ValueError as error:
        raise CLIError(f"cannot fine-tune {args.init_from}: {error}") from None
    print(head.message, flush=True)
    if frozen:
        print(f"Frozen: {', '.join(frozen)}", flush=True)
    return model


def _models(args, splits, overrides, checkpoint=None):
    """The ViT to train and the frozen teacher (None without --teacher) of these flags.

    Args:
        checkpoint: the --init-from checkpoint (`_checkpoint`: a `finetune.Pretrained`), or None to build
            --preset.

    Raises:
        CLIError: a model the flags describe cannot be built, or a teacher
            cannot be used.
    """
    if checkpoint is not None:
        model = _fine_tuning_model(args, splits, overrides, checkpoint)
    else:
        overrides = {
            "num_classes": splits.num_classes,
            "image_size": tuple(splits.x_train.shape[1:3]),
            **overrides,
        }
        try:
            model = build_vit(args.preset, **overrides)
        except (TypeError, ValueError) as error:  # e.g. a --model-arg value build_vit refuses
            raise CLIError(f"cannot build the model: {error}") from None
    try:
        teacher = _load_teacher(args, splits)
    except (OSError, ValueError) as error:
        raise CLIError(f"cannot use the teacher: {error}") from None
    return model, teacher


def _compiled_trainer(args, model, teacher, recipe, steps_per_epoch, max_epochs):
    """`(trainer, budget)`: the compiled `ViTTrainer` and the `TimeBudget` of --time-budget (else None)."""
    trainer = make_trainer(
        model,
        recipe,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        teacher=teacher,
        distillation=args.distillation,
        distillation_weight=args.distillation_weight,
        temperature=args.temperature,
        teacher_flip=args.teacher_flip,
    )
    schedule, budget = plan_learning_rate(
        args.learning_rate,
        steps_per_epoch,
        args.epochs,
        args.warmup_epochs,
        args.time_budget,
        max_epochs=max_epochs,
        clock=agreed_clock(),
    )
    optimizer = make_optimizer(
        args.optimizer,
        schedule,
        args.weight_decay,
        args.clipnorm or None,
        ema_momentum=args.ema_momentum,
        learning_rate_multipliers=layer_decay_multipliers(model, args.layer_decay)
        if args.layer_decay
        else None,
    )
    trainer.compile(
        optimizer=optimizer,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=args.steps_per_execution,
    )
    return trainer, budget


def _saved_model(model):
    """The model to score and save: float32 (the exporters and the TF-free runtimes expect float32 layers), and
    in a job of several processes a copy on this process's devices alone."""
    processes = process_share()[1]
    if processes == 1 and keras.mixed_precision.global_policy().name == "float32":
        return model
    chosen = keras.distribution.distribution()
    if processes > 1:
        keras.distribution.set_distribution(None)
    try:
        return as_float32(model)
    finally:
        keras.distribution.set_distribution(chosen)


def _test_accuracy(model, splits, batch_size):
    """`pipeline.score`'s accuracies on the test split; each process of a job scores its share of it."""
    rows = process_rows(len(splits.y_test))
    # Test-time augmentation (keras_vit.evaluate --tta flip / flip-shift), reported beside the plain accuracy.
    share = pipeline.score(model, splits.x_test[rows], splits.y_test[rows], "flip-shift", batch_size)
    names = sorted(share)
    images = len(splits.y_test[rows])
    # Counts of right answers (rounded: `score` gives shares), summed over the processes with the image counts.
    *right, total = sum_over_processes([round(share[name] * images) for name in names] + [images])
    return {name: float(count / total) for name, count in zip(names, right)}


def _finish(args, splits, model, outcome, metrics, history_path):
    """Scores the float32 model, draws the curves, writes the run's files (the working history at `history_path`
    published with them) and prints the result line. In a job of several processes, process 0 writes, the others
    score their share of the test split and wait until the files are written."""
    model = _saved_model(model)
    accuracy = _test_accuracy(model, splits, max(args.batch_size, 256))
    if process_share()[0] != 0:
        wait_for_every_process("run written")
        return
    output = Path(args.output)
    if outcome.history:
        title = f"{_model_name(args)}, {len(splits.x_train):,} training images"
        plot_training_curves(outcome.history, output / "curves.png", title=title)
    metrics = {
        "test_accuracy": accuracy["none"],
        "test_accuracy_flip_tta": accuracy["flip"],
        "test_accuracy_flip_shift_tta": accuracy["flip-shift"],
        **metrics,
    }
    with writing_alone():
        pipeline.save_run(output, model, splits.class_names, metrics, history_path=history_path)
    print(
        f"Test accuracy {accuracy['none']:.2%} (test-time flip {accuracy['flip']:.2%}, flip-shift "
        f"{accuracy['flip-shift']:.2%}) on {len(splits.y_test)} images after {outcome.epochs} epochs "
        f"({outcome.seconds:.0f} s). Wrote {output}/model.keras",
        flush=True,
    )
    wait_for_every_process("run written")


def _run_identity(args, splits, model, recipe):
    """What makes a checkpoint this run's (`EpochBackup(run=...)`), JSON-ready: the data's folder, its class names
    and image size, where the model starts, its architecture, the image selection, the teachers, the precision, the
    optimizer and what it trains (--freeze-blocks, --layer-decay, --ema-momentum), and what each step computes (the
    augmentation `recipe`, batch, learning rate and warmup, weight decay, label smoothing, clipping, distillation).

    What may change on resume: the length (--epochs, --time-budget, --max-epochs, --time-limit), how the steps run
    (--stream, --loader-workers, --steps-per-execution, --distribute, --mesh) and what is reported or kept
    (--validation-freq, --checkpoint-every, --verbose)."""
    # The architecture: its name is Keras' numbering, its image size and classes are the data's, recorded apart.
    left_out = ("name", "image_size", "num_classes")
    arguments = {key: value for key, value in vit_arguments(model).items() if key not in left_out}
    identity = {
        "data": _data_folder(args.data_dir) or "CIFAR-10 (the loader's standard places)",
        "class names": list(splits.class_names),
        "image size": list(splits.image_shape[:2]),
        "start": f"--init-from {args.init_from}" if args.init_from else f"--preset {args.preset}",
        "model": arguments,
        # What else makes the resumed run another one: the images drawn, the targets distilled, the arithmetic.
        "--limit": args.limit,
        "--seed": args.seed,
        "teachers": [str(Path(path).expanduser().resolve()) for path in args.teacher or ()],
        "precision": MIXED_PRECISION[args.mixed_precision],
        # What the optimizer's variables and the trained set are: another one drops the saved optimizer state.
        "--optimizer": args.optimizer,
        "--freeze-blocks": args.freeze_blocks,
        "--layer-decay": args.layer_decay,
        "--ema-momentum": args.ema_momentum,
        # What each step computes: another value would train the epochs after the checkpoint as another run.
        "validation images": 0 if splits.y_val is None else len(splits.y_val),
        "augmentation": {"--augment": args.augment, **recipe},
        "--batch-size": args.batch_size,
        "--learning-rate": args.learning_rate,
        "--warmup-epochs": args.warmup_epochs,
        "--weight-decay": args.weight_decay,
        "--label-smoothing": args.label_smoothing,
        "--clipnorm": args.clipnorm,
        "--unmasked-finish": args.unmasked_finish,
        "distillation": {
            "--distillation": args.distillation,
            "--distillation-weight": args.distillation_weight,
            "--temperature": args.temperature,
            "--teacher-flip": args.teacher_flip,
        }
        if args.teacher
        else None,
    }
    return json.loads(json.dumps(identity))  # tuples as lists: as the checkpoint gives them back


def _check_same_run(backup_dir, identity):
    """Refuses to resume from a checkpoint of another run (other data, classes, image size or model).

    A checkpoint written before the run was recorded (no record) resumes as before.

    Raises:
        CLIError: one line naming what changed.
    """
    saved = EpochBackup.saved_run(backup_dir)
    if saved is None:
        return
    changes = []
    for key, now in identity.items():
        if key not in saved or saved[key] == now:
            continue
        before = saved[key]
        if isinstance(now, dict) and isinstance(before, dict):
            changed = sorted(name for name in {*now, *before} if now.get(name) != before.get(name))
            what = ", ".join(
                f"{name} {_shown(before.get(name))} -> {_shown(now.get(name))}" for name in changed[:3]
            )
            changes.append(f"its {key} differs ({what})")
        else:
            plural = key.endswith("s") and not key.startswith("--")  # "class names", "teachers"
            changes.append(f"its {key} {'were' if plural else 'was'} {_shown(before)}, now {_shown(now)}")
    if changes:
        raise CLIError(
            f"the checkpoint in {backup_dir} is of another run: {'; '.join(changes)}; rerun with --fresh to start "
            "over (it removes that checkpoint), or choose another --output"
        )


def _data_folder(data_dir):
    """The absolute data folder a run of `--data-dir data_dir` reads (`$KERAS_VIT_DATA_DIR` without it), or None
    (the CIFAR-10 loader's standard places)."""
    root = given_data_dir(data_dir)
    return str(Path(root).expanduser().resolve()) if root else None


# The flags that decide which training images a run holds out for validation, beside its data folder.
_SELECTION_FLAGS = ("--validation-split", "--seed", "--limit")


def _image_selection(run_args):
    """What decides which training images a run held out for validation: its data, --limit, --seed and share."""
    share = run_args.get("validation_split")
    return {
        "data": _data_folder(run_args.get("data_dir")),
        "--limit": run_args.get("limit"),
        "--seed": run_args.get("seed"),
        "--validation-split": DEFAULT_VALIDATION_SPLIT if share is None else share,
    }


def _warn_of_teachers_that_saw_validation(args):
    """Warns of each --teacher whose run (the `metrics.json` beside it, written by `keras_vit.teacher`) held out
    other training images than this run's validation images: it trained on some of them, so distillation leaks them
    and the validation scores read high. A teacher without that record, or of other data, is not judged."""
    this_run = _image_selection(vars(args))
    for path in args.teacher or ():
        try:
            teacher_args = json.loads((Path(path).expanduser().parent / "metrics.json").read_text())["args"]
            teacher_run = _image_selection(teacher_args)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if teacher_run["data"] != this_run["data"] or teacher_run == this_run:
            continue
        print(
            f"warning: the teacher {path} was trained with {_selection_flags(teacher_run)}, not this run's "
            f"{_selection_flags(this_run)}: it saw some of this run's validation images, so the validation scores read high; train the teacher "
            "with this run's flags, or give --validation-split 0 here",
            flush=True,
        )


def _selection_flags(selection):
    """`"--validation-split 0.1, --seed 0, --limit None"` of an `_image_selection`."""
    return ", ".join(f"{flag} {selection[flag]}" for flag in _SELECTION_FLAGS)


def _shown(value, most=8):
    """A value for a one-line message: long lists cut to their first `most` items."""
    if isinstance(value, list) and len(value) > most:
        return f"[{', '.join(map(repr, value[:most]))}, ... ({len(value)} in all)]"
    return repr(value)


def _model_name(args):
    return f"{args.init_from} fine-tuned" if args.init_from else args.preset


def run(args, splits, overrides, recipe, checkpoint=None):
    """Trains, scores and saves; `overrides` and `recipe`: `flag_overrides(args)` and `training_recipe` of the args;
    `checkpoint`: the --init-from checkpoint (`_checkpoint`; None to build --preset)."""
    # Refused before anything is written: one smaller batch would not split over the devices.
    shards = _batch_shards()
    if shards > 1 and args.batch_size > len(splits.y_train):
        largest = len(splits.y_train) - len(splits.y_train) % shards
        raise CLIError(
            f"--batch-size {args.batch_size} is more than the {len(splits.y_train)} training images; split over "
            f"{shards} devices, a batch must divide by {shards}: give --batch-size {largest} or less, a multiple of "
            f"{shards}"
        )
    output = Path(args.output)
    backup_dir = checkpoint_folder(output)
    writer = process_share()[0] == 0  # alone, or process 0 of a job: the others write nothing
    if writer and args.fresh and backup_dir.exists():
        shutil.rmtree(backup_dir)
    wait_for_every_process("checkpoint chosen")
    resuming = backup_dir.exists()
    pipeline.start_run(output, args.seed, args.mixed_precision, create=writer)
    print(splits.summary(), flush=True)
    # The history is kept beside the checkpoint until the run's files are all written (pipeline.save_run).
    history_path = backup_dir / "history.csv"
    epochs_done = EpochBackup.saved_epochs(backup_dir) if resuming else 0
    try:
        check_same_on_every_process(epochs_done, f"the epochs of the checkpoint in {backup_dir}")
    except ValueError as error:
        raise CLIError(
            f"{error}: --output must be a folder every process reads (a shared file system)"
        ) from None
    try:
        model, teacher = _models(args, splits, overrides, checkpoint)
    except CLIError as error:
        return _error(error)
    identity = _run_identity(args, splits, model, recipe)
    if resuming:
        _check_same_run(backup_dir, identity)  # before anything in the checkpoint's folder changes
    if epochs_done:
        print(f"Resuming from the checkpoint of epoch {epochs_done} in {backup_dir}", flush=True)
    if writer:
        if resuming:
            # The epochs after the checkpoint run again: their rows of a killed run go.
            pipeline.trim_history(history_path, epochs_done)
        backup_dir.mkdir(parents=True, exist_ok=True)

    # Batches of one shape only (one compilation): each epoch leaves out its last len % batch images.
    index, processes = process_share()
    batches = TrainingBatches(
        splits.x_train,
        splits.y_train,
        args.batch_size,
        seed=args.seed,
        process_index=index,
        process_count=processes,
        readers=_readers(args),
    )
    # With a budget fit may run past the estimate, up to --max-epochs.
    max_epochs = (args.max_epochs or 10 * args.epochs) if args.time_budget else args.epochs
    trainer, budget = _compiled_trainer(args, model, teacher, recipe, len(batches), max_epochs)
    before_history, after_history, time_limit, unmasked, backup = _callbacks(
        args, budget, max_epochs, backup_dir, identity
    )
    length = describe_length(args.epochs, args.time_budget)
    device = pipeline.describe_device()
    print(
        f"Training {_model_name(args)} ({model.count_params():,} parameters) for {length}, {len(batches)} steps "
        "each, "
        f"on {device}",
        flush=True,
    )
    try:
        outcome = pipeline.fit(
            trainer,
            batches,
            epochs=max_epochs,
            history_path=history_path if writer else None,
            append=resuming,
            before_history=before_history,
            after_history=after_history,
            verbose=args.verbose if writer else 0,
            **_validation(splits, args),
        )
    except Exception:
        # A streamed file that cannot be decoded, read inside tf.data (TensorFlow), arrives wrapped in a graph
        # execution error: report the file's own error, which the streamed images recorded.
        unreadable = first_unreadable(splits.x_train, splits.x_val)
        if unreadable is None:
            raise
        raise unreadable from None
    if budget is not None and budget.stopped_epoch is None and outcome.epochs == max_epochs:
        print(
            f"warning: {max_epochs} epochs ended before the {args.time_budget:.0f} s budget; "
            "raise --max-epochs next time.",
            file=sys.stderr,
        )

    if outcome.diverged:
        # Nothing is written: a model or metrics of NaN weights would replace a good run's.
        kept = EpochBackup.saved_epochs(backup_dir)
        checkpoint = (
            f"the checkpoint of epoch {kept} in {backup_dir} is kept" if kept else "no epoch was good"
        )
        return _error(
            f"the loss became NaN or infinite in epoch {outcome.epochs} and training stopped; model.keras was not "
            f"written (a previous one is kept) and {checkpoint}. Lower --learning-rate or use --mixed-precision "
            "none, and rerun (--fresh to start over).",
            status=1,
        )
    _finish(
        args,
        splits,
        model,
        outcome,
        history_path=history_path,
        metrics={
            **pipeline.run_metrics(outcome, splits, model, len(batches) * batches.batch_size, args),
            # The last validation score of the run (None without a validation split).
            "validation_accuracy": next(
                (v for v in reversed(outcome.history.get("val_accuracy", [])) if v == v), None
            ),
            "epochs_requested": args.epochs,
            "stopped_by_time_limit": time_limit is not None and time_limit.stopped_epoch is not None,
            "unmasked_from_epoch": None
            if unmasked is None or unmasked.started_epoch is None
            else unmasked.started_epoch + 1,
            "time_budget_seconds": args.time_budget,
            # Where the run resumed from its checkpoint, and the length asked before (empty: trained in one go).
            "resumes": backup.resumes,
        },
    )
    if writer:
        shutil.rmtree(backup_dir, ignore_errors=True)  # last: a run killed before this resumes and rewrites
    return 0


def _bytes_needed(model):
    """Disk space a run of `model` needs at most: two checkpoint versions while one replaces the other, the saved
    model (its float32 weights), and a megabyte for the rest."""
    return 2 * checkpoint_bytes(model) + model.count_params() * 4 + 2**20


def _interrupted(args, status):
    """The one line a stopped run prints: what was saved, how to resume (without --fresh, which starts over)."""
    backup_dir = checkpoint_folder(args.output)
    try:
        epochs = EpochBackup.saved_epochs(backup_dir)
    except (OSError, ValueError):
        epochs = 0
    if epochs:
        command = "the same command without --fresh" if args.fresh else "the same command"
        saved = f"the checkpoint of epoch {epochs} in {backup_dir} is kept; rerun {command} to resume"
    else:
        saved = "no epoch was finished, nothing to resume"
    print(f"interrupted: {saved}", file=sys.stderr)
    return status


def main(args):
    """Runs `python -m keras_vit.train` with its parsed and checked flags (`keras_vit.train.check_args`).

    Joins the job's processes first when the flags or the environment make this process one of several.

    Returns:
        The exit status: 0 when the run's files are written, 2 for bad flags or data, 1 for a failed run,
        130/143 when interrupted (the checkpoint is kept).
    """
    if _joins_processes(args):
        try:
            join_processes(args.coordinator, _num_processes(args), args.process_id)
        except (RuntimeError, ValueError) as error:  # JAX's own errors are RuntimeErrors
            return _error(f"cannot join the job of several processes: {first_line(error)}")
        index, count = process_share()
        print(
            f"Process {index} of {count} ({len(keras.distribution.list_devices())} devices in all)",
            flush=True,
        )
        if count > 1 and args.distribute == "none":
            return leave(
                _error("several processes train one model together: add --distribute data (or model)")
            )
        with stop_when_a_process_fails():
            return leave(_main_in_process(args))
    return _main_in_process(args)


def _joins_processes(args):
    """Whether these flags or Keras' environment variables make this process one of a job of several."""
    if args.num_processes == 1:
        return False
    given = (args.coordinator, args.num_processes, args.process_id)
    return any(value is not None for value in given) or "KERAS_DISTRIBUTION_NUM_PROCESSES" in os.environ


def _num_processes(args):
    """--num-processes for `join_processes`: None (Keras' variable, or the cluster's with 'auto') or a count."""
    return None if args.num_processes == "auto" else args.num_processes


def _main_in_process(args):
    """`main` after this process has joined its job (if any): the model, the distribution, the run."""
    try:
        overrides = flag_overrides(args)
        # Before the data loads: bad flags fail fast.
        recipe = training_recipe(args.augment, args.repeats, args.mix_prob)
    except ValueError as error:
        return _error(error)
    try:
        if keras.backend.backend() == "torch" and args.steps_per_execution > 1:
            raise CLIError(
                "--steps-per-execution must be 1 on the PyTorch backend (Keras runs one step per call there)"
            )
        # Before the data loads: the checkpoint, or the check run() makes again, at the size the data will have.
        checkpoint = _checkpoint(args, overrides) if args.init_from else None
        image_size, data_size = _image_sizes(args, checkpoint.model if checkpoint else None)
        if checkpoint is not None:
            try:  # the check its resize to the data's size makes once the data is loaded
                patch_grid(data_size, vit_arguments(checkpoint.model)["patch_size"])
            except ValueError as error:
                raise CLIError(f"cannot fine-tune {args.init_from}: {error}") from None
            model = checkpoint.model
        else:
            model = build_vit(args.preset, **{**overrides, "image_size": data_size})
        # A fine-tuning run's own --patch-dropout (a regularization override) is applied once the data is loaded.
        arguments = vit_arguments(model)
        if args.unmasked_finish and not overrides.get("patch_dropout", arguments["patch_dropout"]):
            raise CLIError(
                "--unmasked-finish needs --patch-dropout (a model that leaves tokens out in training)"
            )
        chosen = _distribution(args, arguments)
    except CLIError as error:
        return _error(error)
    except (TypeError, ValueError) as error:
        return _error(f"cannot build the model: {error}")
    if keras.backend.backend() == "tensorflow" and chosen is not None:
        with chosen.scope():  # TensorFlow's strategy: the models are built, compiled and fitted inside it
            return _main(args, overrides, recipe, checkpoint, model, image_size)
    try:
        return _main(args, overrides, recipe, checkpoint, model, image_size)
    finally:
        if chosen is not None:
            keras.distribution.set_distribution(None)


def _distribution(args, arguments):
    """Sets the `keras.distribution` of --distribute (for the models built from here on); returns it, or None.
    Under TensorFlow, returns the `tf.distribute` strategy of `--distribute data` instead (to enter).

    Raises:
        CLIError: it cannot run here, or does not fit the model or the batch.
    """
    if args.distribute != "none" and keras.backend.backend() == "tensorflow":
        return _tensorflow_strategy(args)
    try:
        chosen = distribution(args.distribute, args.mesh)
        if chosen is None:
            return None
        shape = dict(zip(chosen.device_mesh.axis_names, chosen.device_mesh.shape))
        if args.distribute == "model":
            check_model_fits_mesh(arguments, (shape["batch"], shape["model"]))
    except ValueError as error:
        raise CLIError(str(error)) from None
    if args.batch_size % shape["batch"]:
        raise CLIError(f"--batch-size {args.batch_size} does not split over {shape['batch']} devices")
    keras.distribution.set_distribution(chosen)
    mesh = " x ".join(f"{size} ({name})" for name, size in shape.items())
    print(f"Distributing: {args.distribute} parallel on a {mesh} device mesh", flush=True)
    return chosen


def _tensorflow_strategy(args):
    """The `tf.distribute.MirroredStrategy` of `--distribute data` under TensorFlow.

    Raises:
        CLIError: `--distribute model`, fewer than two devices, or a batch that does not split over them.
    """
    if args.distribute != "data":
        raise CLIError(
            f"--distribute {args.distribute} runs on Keras' distribution API, on the JAX backend only "
            "(KERAS_BACKEND=jax); under TensorFlow, --distribute data mirrors the model over several devices"
        )
    try:
        strategy = mirrored_strategy()
    except ValueError as error:
        raise CLIError(str(error)) from None
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        raise CLIError(f"--batch-size {args.batch_size} does not split over {replicas} devices")
    print(f"Distributing: data parallel over {replicas} devices (tf.distribute.MirroredStrategy)", flush=True)
    if args.clipnorm:
        print(
            f"note: under tf.distribute, Keras clips each device's share of the gradient to --clipnorm "
            f"{args.clipnorm:g} by its own norm, before the sum: while the clip bites, the run differs from one "
            "device (--clipnorm 0 turns it off)",
            flush=True,
        )
    return strategy


def _image_sizes(args, checkpoint):
    """`(asked, data)`: the size image folders load at (--image-size, else the --init-from checkpoint's, else the
    preset's), and the size the training images will have: the same, or 32x32 from the CIFAR-10 loader (a
    checkpoint's position embedding is then resampled to it).

    Raises:
        CLIError: --image-size other than 32 for data the CIFAR-10 loader reads (it does not resize).
    """
    if args.image_size:
        asked = (args.image_size, args.image_size)
    elif checkpoint is not None:
        asked = pair(vit_arguments(checkpoint)["image_size"], "image_size")
    else:
        asked = pair(get_preset(args.preset)["image_size"], "image_size")
    data_size = pipeline.loaded_image_size(
        args.data_dir, args.dataset, asked, size_given=bool(args.image_size), stream=args.stream
    )
    return asked, data_size


def _main(args, overrides, recipe, checkpoint, model, image_size):
    """`main` after the flags and the model are checked: the output folder, the data, the run.

    `image_size`: the size image folders load at (`_image_sizes`)."""
    output = Path(args.output)
    writer = process_share()[0] == 0  # alone, or process 0 of a job: the others write nothing
    try:
        with stop_on_signals():
            locked = pipeline.locked_output(output, min_free_bytes=_bytes_needed(model))
            with locked if writer else contextlib.nullcontext(output):
                if not args.fresh and not checkpoint_folder(output).exists():  # a checkpoint resumes
                    pipeline.check_not_finished(output)
                try:
                    loaded = pipeline.load_splits(
                        args.data_dir,
                        args.dataset,
                        image_size,
                        args.limit,
                        args.seed,
                        stream=args.stream,
                        size_given=bool(args.image_size),
                    )
                    splits = loaded.with_validation(
                        args.validation_split, args.seed, default=DEFAULT_VALIDATION_SPLIT
                    )
                except (OSError, ValueError) as error:  # DataNotFoundError is an OSError
                    return _error(error)
                if (
                    writer and splits.y_val is not None and loaded.y_val is None
                ):  # held out of the training images
                    _warn_of_teachers_that_saw_validation(args)
                return run(args, splits, overrides, recipe, checkpoint)
    except (CLIError, CheckpointError) as error:
        return _error(error)
    except UnreadableImageError as error:  # a streamed file, found when its batch was read
        return _error(
            f"{error} (a streamed data set is checked as each batch is read: remove or replace the file and rerun; "
            "the run resumes from its last checkpoint); model.keras was not written"
        )  # 2: a file to fix before the rerun
    except KeyboardInterrupt:
        return _interrupted(args, 130)
    except Terminated:
        return _interrupted(args, 143)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            return _error(
                f"cannot write to {output}: {os.strerror(error.errno)}; the files written before are intact"
            )
        raise
