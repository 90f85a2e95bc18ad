"""What `python -m keras_vit.teacher` does once its flags are parsed and checked (`keras_vit.teacher`).

`main(args)` loads the data and `run` trains the ConvNet teacher, scores it
and writes its run's files under --output. Kept apart from the flags so that
`--help` and a bad flag answer without importing Keras.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras

from keras_vit.cli_utils import (
    CLIError,
    Terminated,
    print_error,
    stop_on_signals,
)
from keras_vit.models.teachers import build_teacher, with_dtype_policy
from keras_vit.training import pipeline
from keras_vit.training.batches import TrainingBatches, even_batch_size
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.plan import describe_length, plan_learning_rate
from keras_vit.training.recipes import AUGMENT_RECIPES, DEFAULT_VALIDATION_SPLIT, TEACHER_RECIPES
from keras_vit.training.trainer import make_trainer


def run(args, splits):
    """Trains, scores and saves the teacher; writes `model.keras`, `labels.txt`, `history.csv` and `metrics.json`
    to `--output`."""
    output = pipeline.start_run(args.output, args.seed, args.mixed_precision)
    print(splits.summary(), flush=True)
    # airbench's whitening and input normalisation come from 5,000 training images, as in airbench94.
    try:
        model = build_teacher(
            args.arch,
            tuple(splits.x_train.shape[1:3]),
            splits.num_classes,
            args.width,
            channels=splits.x_train.shape[-1],
            images=splits.x_train[:5000],
        )
    except ValueError as error:  # an image size the network cannot take
        raise CLIError(f"--arch {args.arch} at --image-size {args.image_size}: {error}") from None
    for setting in ("learning_rate", "weight_decay"):
        if getattr(args, setting) is None:
            setattr(args, setting, TEACHER_RECIPES[args.arch][setting])

    trainer = make_trainer(
        model, AUGMENT_RECIPES[args.augment], label_smoothing=args.label_smoothing, seed=args.seed
    )
    batches = TrainingBatches(splits.x_train, splits.y_train, args.batch_size, seed=args.seed)
    warmup = args.epochs / 5 if args.warmup_epochs is None else args.warmup_epochs
    max_epochs = (args.max_epochs or 4 * args.epochs) if args.time_budget else args.epochs
    schedule, budget = plan_learning_rate(
        args.learning_rate, len(batches), args.epochs, warmup, args.time_budget, max_epochs=max_epochs
    )
    # No gradient clipping: batch norm keeps the steps in scale, and Page's recipe has none.
    optimizer = make_optimizer("sgd", schedule, args.weight_decay, clipnorm=None)
    trainer.compile(optimizer=optimizer, metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    print(
        f"Training the {args.arch} teacher ({model.count_params():,} parameters) for "
        f"{describe_length(args.epochs, args.time_budget, max_epochs)}, {len(batches)} steps each, on "
        f"{pipeline.describe_device()}",
        flush=True,
    )
    # The history goes to history.csv only with the teacher it describes (pipeline.save_run); the working file
    # goes whatever happens (an interrupted teacher starts over).
    history_path = output / ".history.partial.csv"
    try:
        # TimeBudget before the history file: its learning rate and plan go into the history.
        outcome = pipeline.fit(
            trainer,
            batches,
            epochs=max_epochs,
            history_path=history_path,
            before_history=[budget] if budget else [],
            verbose=args.verbose,
        )
        if budget is not None and budget.stopped_epoch is None and not outcome.diverged:
            print(
                f"warning: {max_epochs} epochs ended before the {args.time_budget:.0f} s budget; "
                "--max-epochs caps the run",
                flush=True,
            )

        if outcome.diverged:  # nothing written: NaN weights would replace a good teacher
            print(
                "error: the loss became NaN or infinite; the teacher was not saved (a previous one is kept); lower "
                "--learning-rate.",
                file=sys.stderr,
            )
            return 1
        if keras.mixed_precision.global_policy().name != "float32":
            keras.mixed_precision.set_global_policy("float32")
            model = with_dtype_policy(model, "float32")
        # What a distillation with --teacher-flip learns from: the mean of the image's and its mirror's logits.
        accuracy = pipeline.score(
            model,
            splits.x_test,
            splits.y_test,
            "flip",
            even_batch_size(len(splits.x_test), max(args.batch_size, 250)),
        )
        metrics = {
            "arch": args.arch,
            "test_accuracy": accuracy["none"],
            "test_accuracy_flip": accuracy["flip"],
            **pipeline.run_metrics(outcome, splits, model, len(batches) * batches.batch_size, args),
            "time_budget_seconds": args.time_budget,
            "stopped_by_time_budget": budget is not None and budget.stopped_epoch is not None,
        }
        pipeline.save_run(output, model, splits.class_names, metrics, history_path=history_path)
        print(
            f"Teacher test accuracy {accuracy['none']:.2%} (with its mirror images {accuracy['flip']:.2%}) on "
            f"{len(splits.y_test)} images after {outcome.epochs} epochs ({outcome.seconds:.0f} s of fit). "
            f"Wrote {output}/model.keras",
            flush=True,
        )
        return 0
    finally:
        history_path.unlink(missing_ok=True)


def main(args):
    """Runs `python -m keras_vit.teacher` with its parsed and checked flags: loads the data, trains, writes.

    Returns:
        The exit status: 0 when the teacher is written, 1 when its loss diverged, 2 for bad flags or data,
        130/143 when interrupted.
    """
    output = Path(args.output)
    try:
        with stop_on_signals():
            with pipeline.locked_output(output):
                if not args.fresh:
                    pipeline.check_not_finished(output)
                try:
                    image_size = (args.image_size, args.image_size)
                    # A size the CIFAR-10 loader cannot give is refused before any image is read.
                    pipeline.loaded_image_size(args.data_dir, args.dataset, image_size, size_given=True)
                    splits = pipeline.load_splits(
                        args.data_dir, args.dataset, image_size, args.limit, args.seed, size_given=True
                    )
                    splits = splits.with_validation(
                        args.validation_split, args.seed, default=DEFAULT_VALIDATION_SPLIT
                    )
                except (OSError, ValueError) as error:  # DataNotFoundError is an OSError
                    print_error(error)
                    return 2
                return run(args, splits)
    except CLIError as error:
        print_error(error)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the teacher was not saved", file=sys.stderr)
        return 130
    except Terminated:
        print("interrupted: the teacher was not saved", file=sys.stderr)
        return 143
