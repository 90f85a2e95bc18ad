"""`ViTTrainer`: `model.fit` on the exportable ViT with augmentation, label mixing and distillation in the step.

The trainer wraps the ViT with on-device augmentation and MixUp/CutMix (and,
optionally, a frozen teacher to distil) so that plain `model.fit` trains it
on any backend; the wrapped model is what gets saved and exported, never the
trainer.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers import PACKAGE
from keras_vit.training.augment import MixUpCutMix, build_augmentation


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
    test-time flip), at twice the teacher's cost. The teacher is never saved
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
            classes (e.g. `keras_vit.models.teachers.build_resnet9`) to distil.
        distillation: `"soft"` (default) or `"hard"`, the teacher's targets.
        distillation_weight: float in `[0, 1]`, the teacher's share of the
            loss (default 1: the teacher's targets alone).
        temperature: float, the softmax temperature of `"soft"` distillation.
        teacher_flip: bool, average the teacher's logits over each image and
            its left-right mirror.
    """

    DISTILLATION_MODES = ("hard", "soft")

    def __init__(
        self,
        model,
        augmentation=(),
        mixing=None,
        label_smoothing=0.0,
        repeats=1,
        teacher=None,
        distillation="soft",
        distillation_weight=1.0,
        temperature=1.0,
        teacher_flip=False,
        **kwargs,
    ):
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
                raise ValueError(
                    f"the teacher has {teacher.output_shape[-1]} outputs, the model {self.num_classes}."
                )
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
        if (
            self.teacher is not None and self.distillation_weight > 0
        ):  # weight 0: its forward pass is not needed
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
            loss = (
                1.0 - self.distillation_weight
            ) * loss + self.distillation_weight * self._distillation_loss(teacher_logits, logits)
        # Regularisation losses of the wrapped model (none by default).
        for extra in self.losses:
            loss = loss + ops.cast(extra, loss.dtype)
        return _replica_share(loss)

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
        kl = ops.sum(
            ops.exp(teacher_log_probs) * (teacher_log_probs - ops.log_softmax(logits / t, axis=-1)), axis=-1
        )
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


def _replica_share(loss):
    """The loss of one device's share of the batch under a `tf.distribute` strategy (the mean over the share,
    divided by the devices), as Keras' own losses scale it: the gradients summed over the devices are then the
    global batch's. Unchanged elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * (1.0 / replicas)


def make_trainer(model, recipe, label_smoothing=0.0, seed=None, **distillation):
    """Builds a `ViTTrainer` from an augmentation recipe dict.

    Args:
        model: the ViT to train.
        recipe: dict with `crop_padding, flip, randaug_ops, randaug_magnitude,
            erasing, mixup_alpha, cutmix_alpha` and optionally
            `erasing_max_area` (default 0.25), `mix_prob` (default 1) and
            `repeats` (default 1); see
            `keras_vit.training.recipes.AUGMENT_RECIPES`.
        label_smoothing: float.
        seed: optional int, seeds the augmentation layers.
        **distillation: `teacher`, `distillation`, `distillation_weight`,
            `temperature`, `teacher_flip` of `ViTTrainer`.
    """
    augmentation = build_augmentation(
        recipe["crop_padding"],
        recipe["flip"],
        recipe["randaug_ops"],
        recipe["randaug_magnitude"],
        recipe["erasing"],
        recipe.get("erasing_max_area", 0.25),
        seed=seed,
    )
    mixing = None
    mix_prob = recipe.get("mix_prob", 1.0)
    if (recipe["mixup_alpha"] > 0 or recipe["cutmix_alpha"] > 0) and mix_prob > 0:
        mixing = MixUpCutMix(
            recipe["mixup_alpha"],
            recipe["cutmix_alpha"],
            mix_prob=mix_prob,
            seed=None if seed is None else seed + 3,
            name="mixup_cutmix",
        )
    return ViTTrainer(
        model,
        augmentation,
        mixing,
        label_smoothing,
        repeats=recipe.get("repeats", 1),
        name="vit_trainer",
        **distillation,
    )
