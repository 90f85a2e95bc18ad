"""Training pieces shared by the CLI, the notebooks and the GPU benchmarks.

`ViTTrainer` wraps the exportable ViT with on-device augmentation and
MixUp/CutMix (and, optionally, a frozen teacher to distil) so that plain
`model.fit` trains it on any backend; the wrapped model is what gets saved
and exported, never the trainer.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_vit.augment import MixUpCutMix, build_augmentation
from keras_vit.callbacks import TimeBudget
from keras_vit.layers import PACKAGE

# Variables that AdamW must not decay (biases, norms, tokens, positions).
NO_WEIGHT_DECAY = ["bias", "gamma", "beta", "class_token", "position_embedding"]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ViTTrainer(keras.Model):
    """`model.fit` wrapper: augmentation and label mixing in the train step.

    Fit it on `x={"images": uint8 or float images (0..255), "labels": int
    labels}` and `y=labels`. In training it augments the images, mixes
    images and one-hot labels (MixUp/CutMix), runs the wrapped model and
    returns `{"logits", "targets", "labels"}`; the loss is the soft-target cross
    entropy with label smoothing. In evaluation and prediction it is the
    wrapped model on the unaugmented images (`x` may be just the images).

    With a `teacher`, the teacher classifies the same augmented, mixed images
    (frozen, in inference mode) and the loss becomes
    `(1 - distillation_weight) * CE(targets) + distillation_weight * D`, where
    `D` is, for `distillation="hard"` (DeiT's hard-label distillation), the
    cross entropy with the teacher's top class (label smoothing applied as to
    the labels), and for `"soft"` Hinton's `temperature**2 * KL(teacher ||
    model)` at that temperature. With `teacher_flip`, the teacher's logits are
    the mean of its logits for the images and for their mirror images (its
    test-time flip: +0.66 point for the width-32 ResNet-9 on the full
    training set), at twice the teacher's cost. The teacher is never saved
    with the model.

    Args:
        model: the ViT (`build_vit`); it is what you save and export.
        augmentation: list of per-image augmentation layers.
        mixing: optional `MixUpCutMix` layer.
        label_smoothing: float.
        repeats: int, repeated augmentation: a training batch of `n` images
            is replaced by its first `ceil(n / repeats)` images, each
            `repeats` times, before the (per-image random) augmentation. The
            batch size and step cost stay the same; an epoch then shows each
            image about once, as with DeiT's repeated-augmentation sampler.
        teacher: optional frozen classifier of the same images into the same
            classes (e.g. `keras_vit.teacher.build_resnet9`) to distil.
        distillation: `"soft"` (default) or `"hard"`, the teacher's targets.
        distillation_weight: float in `[0, 1]`, the teacher's share of the
            loss (default 1: the teacher's targets alone, which did best on
            the CPU, benchmarks/README.md).
        temperature: float, the softmax temperature of `"soft"` distillation.
        teacher_flip: bool, average the teacher's logits over each image and
            its left-right mirror.
    """

    DISTILLATION_MODES = ("hard", "soft")

    def __init__(self, model, augmentation=(), mixing=None, label_smoothing=0.0, repeats=1, teacher=None,
                 distillation="soft", distillation_weight=1.0, temperature=1.0, teacher_flip=False, **kwargs):
        super().__init__(**kwargs)
        if int(repeats) < 1:
            raise ValueError(f"repeats must be a positive integer, got {repeats}.")
        if distillation not in self.DISTILLATION_MODES:
            raise ValueError(f"distillation must be one of {self.DISTILLATION_MODES}, got {distillation!r}.")
        if not 0.0 <= float(distillation_weight) <= 1.0:
            raise ValueError(f"distillation_weight must be in [0, 1], got {distillation_weight}.")
        if float(temperature) <= 0.0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.model = model
        self.augmentation = list(augmentation)
        self.mixing = mixing
        self.label_smoothing = float(label_smoothing)
        self.repeats = int(repeats)
        self.num_classes = model.output_shape[-1]
        if teacher is not None:
            if teacher.output_shape[-1] != self.num_classes:
                raise ValueError(f"the teacher has {teacher.output_shape[-1]} outputs, the model "
                                 f"{self.num_classes}.")
            teacher.trainable = False  # its weights are not the optimizer's
        self.teacher = teacher
        self.distillation = distillation
        self.distillation_weight = float(distillation_weight)
        self.temperature = float(temperature)
        self.teacher_flip = bool(teacher_flip)
        self.build()

    def build(self, input_shape=None):
        # The wrapped functional model is built already; the augmentation
        # layers hold only their seed state.
        self.built = True

    def augment_batch(self, images, labels):
        """What the model is trained on: the batch after repeats, augmentation and mixing.

        Args:
            images: uint8 or float images `(batch, height, width, channels)`, 0..255.
            labels: int labels `(batch,)`.

        Returns:
            `(images, targets, labels)`: float32 images, soft targets
            `(batch, num_classes)` (before label smoothing) and the labels in
            the order of the rows (repeats reorder them).
        """
        images = ops.cast(images, "float32")
        labels = ops.reshape(labels, (-1,))
        if self.repeats > 1:
            # Rows 0,0,0,1,1,1,... (dynamic batch size: the last batch may be short).
            rows = ops.arange(ops.shape(images)[0]) // self.repeats
            images = ops.take(images, rows, axis=0)
            labels = ops.take(labels, rows, axis=0)
        images = self._augment_images(images)
        targets = ops.one_hot(ops.cast(labels, "int32"), self.num_classes)
        if self.mixing is not None and self.mixing.enabled:
            images, targets = self.mixing(images, targets)
        return images, targets, labels

    def _augment_images(self, images):
        for layer in self.augmentation:
            images = layer(images, training=True)
        return images

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            images, labels = inputs["images"], inputs.get("labels")
        else:
            images, labels = inputs, None
        if not training:
            return self.model(ops.cast(images, "float32"), training=False)
        if labels is None:  # no labels to mix: augmentation only
            return self.model(self._augment_images(ops.cast(images, "float32")), training=True)
        images, targets, labels = self.augment_batch(images, labels)
        # `labels` are what the training metrics compare with.
        outputs = {"logits": self.model(images, training=True), "targets": targets, "labels": labels}
        if self.teacher is not None and self.distillation_weight > 0:  # weight 0: its forward pass is not needed
            # The teacher sees exactly the student's images (DeiT; Beyer et al. 2022's "consistent" teaching).
            teacher_logits = ops.cast(self.teacher(images, training=False), "float32")
            if self.teacher_flip:  # the width axis of (batch, height, width, channels)
                mirrored = ops.cast(self.teacher(ops.flip(images, axis=2), training=False), "float32")
                teacher_logits = (teacher_logits + mirrored) / 2.0
            outputs["teacher_logits"] = ops.stop_gradient(teacher_logits)
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, dict):
            targets, logits = y_pred["targets"], y_pred["logits"]
        else:
            targets = ops.one_hot(ops.reshape(ops.cast(y, "int32"), (-1,)), self.num_classes)
            logits = y_pred
        # Cast also converts NumPy arrays, which torch tensors refuse in arithmetic.
        targets, logits = ops.cast(targets, "float32"), ops.cast(logits, "float32")
        loss = self._cross_entropy(self._smooth(targets), logits)
        teacher_logits = y_pred.get("teacher_logits") if isinstance(y_pred, dict) else None
        if teacher_logits is not None:  # present only at a weight above 0 (call skips the teacher otherwise)
            loss = (1.0 - self.distillation_weight) * loss + self.distillation_weight * self._distillation_loss(
                teacher_logits, logits)
        # Regularisation losses of the wrapped model (none by default).
        for extra in self.losses:
            loss = loss + ops.cast(extra, loss.dtype)
        return loss

    def _smooth(self, targets):
        if not self.label_smoothing:
            return targets
        return targets * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes

    @staticmethod
    def _cross_entropy(targets, logits):
        return ops.mean(-ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1))

    def _distillation_loss(self, teacher_logits, logits):
        if self.distillation == "hard":
            teacher_targets = ops.one_hot(ops.argmax(teacher_logits, axis=-1), self.num_classes)
            return self._cross_entropy(self._smooth(teacher_targets), logits)
        t = self.temperature
        teacher_log_probs = ops.log_softmax(teacher_logits / t, axis=-1)
        kl = ops.sum(ops.exp(teacher_log_probs) * (teacher_log_probs - ops.log_softmax(logits / t, axis=-1)), axis=-1)
        return t * t * ops.mean(kl)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            y, y_pred = y_pred["labels"], y_pred["logits"]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self):
        return {
            "model": keras.saving.serialize_keras_object(self.model),
            "augmentation": [keras.saving.serialize_keras_object(layer) for layer in self.augmentation],
            "mixing": None if self.mixing is None else keras.saving.serialize_keras_object(self.mixing),
            "label_smoothing": self.label_smoothing,
            "repeats": self.repeats,
            "teacher": None if self.teacher is None else keras.saving.serialize_keras_object(self.teacher),
            "distillation": self.distillation,
            "distillation_weight": self.distillation_weight,
            "temperature": self.temperature,
            "teacher_flip": self.teacher_flip,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        config["augmentation"] = [keras.saving.deserialize_keras_object(c) for c in config["augmentation"]]
        for key in ("mixing", "teacher"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def make_trainer(model, recipe, label_smoothing=0.0, seed=None, **distillation):
    """Builds a `ViTTrainer` from an augmentation recipe dict.

    Args:
        model: the ViT to train.
        recipe: dict with `crop_padding, flip, randaug_ops, randaug_magnitude,
            erasing, mixup_alpha, cutmix_alpha` and optionally
            `erasing_max_area` (default 0.25), `mix_prob` (default 1) and
            `repeats` (default 1); see
            `keras_vit.augment.AUGMENT_RECIPES`.
        label_smoothing: float.
        seed: optional int, seeds the augmentation layers.
        **distillation: `teacher`, `distillation`, `distillation_weight`,
            `temperature`, `teacher_flip` of `ViTTrainer`.
    """
    augmentation = build_augmentation(
        recipe["crop_padding"], recipe["flip"], recipe["randaug_ops"], recipe["randaug_magnitude"],
        recipe["erasing"], recipe.get("erasing_max_area", 0.25), seed=seed,
    )
    mixing = None
    mix_prob = recipe.get("mix_prob", 1.0)
    if (recipe["mixup_alpha"] > 0 or recipe["cutmix_alpha"] > 0) and mix_prob > 0:
        mixing = MixUpCutMix(recipe["mixup_alpha"], recipe["cutmix_alpha"], mix_prob=mix_prob,
                             seed=None if seed is None else seed + 3, name="mixup_cutmix")
    return ViTTrainer(model, augmentation, mixing, label_smoothing, repeats=recipe.get("repeats", 1),
                      name="vit_trainer", **distillation)


def learning_rate_schedule(learning_rate, total_steps, warmup_steps, final_fraction=0.0):
    """Linear warmup from 0 to `learning_rate`, then cosine decay.

    Args:
        learning_rate: float, the peak rate.
        total_steps: int, optimizer steps of the whole run.
        warmup_steps: int, steps of linear warmup (part of `total_steps`).
        final_fraction: float, the end rate as a fraction of the peak.
    """
    warmup_steps = int(min(warmup_steps, max(total_steps - 1, 0)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=final_fraction,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def plan_learning_rate(learning_rate, steps_per_epoch, epochs, warmup_epochs, time_budget=None, max_epochs=None):
    """Warmup + cosine over `epochs`, or over the epochs that fit in `time_budget` seconds of `fit`.

    Args:
        learning_rate: float, the peak rate.
        steps_per_epoch: int, optimizer steps an epoch.
        epochs: int, the run's length; with `time_budget`, the first estimate.
        warmup_epochs: float, epochs of linear warmup (with `time_budget`, as a
            share of `epochs`, at most half the run).
        time_budget: optional float, seconds of `fit` (compilation included).
        max_epochs: optional int, with `time_budget` the epochs `fit` is
            called with: the budget's plan never exceeds them.

    Returns:
        `(rate, budget)`: what the optimizer takes (a schedule, or with a
        budget a float that `budget`, a `keras_vit.callbacks.TimeBudget` to
        pass to `fit`, sets at every epoch start; else None).
    """
    if time_budget:
        budget = TimeBudget(time_budget, learning_rate, epochs, warmup=min(warmup_epochs / epochs, 0.5),
                            max_epochs=max_epochs)
        return float(learning_rate), budget
    return learning_rate_schedule(learning_rate, steps_per_epoch * epochs, int(steps_per_epoch * warmup_epochs)), None


def describe_length(epochs, time_budget=None, max_epochs=None):
    """A run's length for its start-up line: `"N epochs"`, or with `time_budget`
    its seconds of `fit`, `epochs` as the first estimate (as `plan_learning_rate`
    takes them) and, when given, the cap `max_epochs`."""
    if not time_budget:
        return f"{epochs} epochs"
    cap = "" if max_epochs is None else f", at most {max_epochs}"
    return f"{time_budget:.0f} s of fit (first estimate {epochs} epochs{cap}, planned again from each epoch's time)"


def make_optimizer(name, learning_rate, weight_decay=0.05, clipnorm=1.0, momentum=0.9, ema_momentum=None):
    """AdamW, Adam or SGD with momentum, with global-norm gradient clipping.

    Args:
        name: `"adamw"`, `"adam"` or `"sgd"`.
        learning_rate: float or a schedule.
        weight_decay: float, decoupled weight decay (AdamW and SGD); biases,
            norms, the class token and position embeddings are not decayed.
        clipnorm: float or None, global gradient-norm clip (keeps the early
            steps of a ViT from blowing up).
        momentum: float, for SGD (Nesterov).
        ema_momentum: optional float in `(0, 1)`: keep an exponential moving
            average of the weights, which replaces the weights when `fit`
            ends (Keras' `use_ema`); `None` for no EMA.
    """
    name = name.lower()
    common = dict(learning_rate=learning_rate, global_clipnorm=clipnorm)
    if ema_momentum is not None:
        if not 0.0 < ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1), got {ema_momentum}.")
        common.update(use_ema=True, ema_momentum=ema_momentum)
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=weight_decay, **common)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=momentum, nesterov=True,
                                         weight_decay=weight_decay or None, **common)
    else:
        raise ValueError(f"Unknown optimizer {name!r}; choose adamw, adam or sgd.")
    if optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer


def training_sequence_length(model):
    """Tokens per image in a training step of a `build_vit` model: fewer than at inference with `PatchDropout`."""
    from keras_vit.layers import PatchDropout

    encoder = model.get_layer("patch_encoder")
    for layer in model.layers:
        if isinstance(layer, PatchDropout):
            return layer.kept_tokens(encoder.num_tokens)
    return encoder.num_tokens


def training_flops_per_image(model):
    """Approximate FLOPs of one training step per image (3 x forward).

    Counts the matrix products (2 x multiply-adds) of the patch projection,
    attention projections, attention scores and values, MLP and head; the
    rest (norms, softmax, GELU) is small beside them. Used for MFU. With
    `PatchDropout`, the blocks count the tokens that training keeps.
    """
    encoder = model.get_layer("patch_encoder")
    blocks = [layer for layer in model.layers if layer.name.startswith("block_")]
    patch_dim = model.get_layer("patches").compute_output_shape(model.input_shape)[-1]
    tokens, dim = training_sequence_length(model), encoder.projection_dim
    forward = 2 * encoder.num_patches * patch_dim * dim
    for block in blocks:
        forward += 2 * tokens * (4 * dim * dim + 2 * dim * block.mlp_dim)  # qkv+out, MLP
        forward += 2 * 2 * tokens * tokens * dim  # scores and weighted values
    forward += 2 * dim * model.get_layer("head").units
    return 3 * forward


def steps_per_epoch(num_images, batch_size):
    """Steps of an epoch over `num_images` in batches that may end short."""
    return math.ceil(num_images / batch_size)


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled training batches of one size only, reshuffled every epoch.

    Under JAX (and with `jit_compile` elsewhere) a batch of a new shape is
    compiled anew: the short last batch of `fit(x, y, batch_size=256)` on
    50,000 images (80 images) doubled the first epoch on the H100, from
    about 25 s of compilation to 53 s. So each epoch leaves out the
    `len(images) % batch_size` images that come last in that epoch's
    shuffle: different ones every epoch, so none is left out for good.
    Plain numpy: no tf.data, so it runs on the GPU machine without TensorFlow.

    Args:
        images: array `(num_images, height, width, channels)`.
        labels: int array `(num_images,)`.
        batch_size: int, images per batch; a set smaller than one batch is
            one batch of all its images.
        seed: int, seed of the shuffles.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Each item is `({"images": ..., "labels": ...}, labels)`, what
    `ViTTrainer` takes.
    """

    def __init__(self, images, labels, batch_size, seed=0, **kwargs):
        super().__init__(**kwargs)
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"Need as many labels as images, and at least one: {len(images)} images, "
                             f"{len(labels)} labels.")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.images = images
        self.labels = labels
        self.batch_size = min(int(batch_size), len(images))
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(images))

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        labels = self.labels[rows]
        return {"images": self.images[rows], "labels": labels}, labels

    def on_epoch_end(self):
        self._order = self._rng.permutation(len(self.images))


def even_batch_size(num_images, batch_size):
    """The largest batch size up to `batch_size` that divides `num_images`, if at least half of it.

    Evaluation in `fit` (validation) then compiles one batch shape instead of two:
    10,000 test images in batches of 250 rather than 39 of 256 and one of 16.
    Falls back to `batch_size` when no divisor is that close.
    """
    batch_size = min(int(batch_size), num_images)
    for size in range(batch_size, (batch_size + 1) // 2 - 1, -1):
        if size > 0 and num_images % size == 0:
            return size
    return batch_size
