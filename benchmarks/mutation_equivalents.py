"""Survivors of benchmarks/mutation_testing.py judged equivalent: no input tells them from the original.

Key: (module, function, the mutant's changed lines as `mutation_testing.changed_lines` gives them) -> why. Keyed
by the diff, not by mutmut's numbered names, which shift when a function changes. A key that no longer matches a
survivor is simply unused; a survivor not listed here counts against the kill rate.
"""

EQUIVALENT: dict[tuple[str, str, str], str] = {}

# keras_vit/inference.py (group "loading")
EQUIVALENT.update(
    {
        (
            "keras_vit/inference.py",
            "_innermost",
            '-return first_line(Exception(message.rsplit("Exception encountered:", 1)[-1]))\n+return first_line(Exception(message.rsplit("Exception encountered:", )[-1]))',
        ): "rsplit without maxsplit: its last piece is the same as rsplit(sep, 1)'s",
        (
            "keras_vit/inference.py",
            "_innermost",
            '-return first_line(Exception(message.rsplit("Exception encountered:", 1)[-1]))\n+return first_line(Exception(message.rsplit("Exception encountered:", 2)[-1]))',
        ): "rsplit(sep, 2)[-1] is the same last piece as rsplit(sep, 1)[-1]",
        (
            "keras_vit/inference.py",
            "_load_failure",
            '-foreign and foreign.rsplit(".", 1)[-1] in message\n+foreign and foreign.rsplit(".", )[-1] in message',
        ): "rsplit('.') without maxsplit: its last piece is the same as rsplit('.', 1)'s",
        (
            "keras_vit/inference.py",
            "_load_failure",
            '-foreign and foreign.rsplit(".", 1)[-1] in message\n+foreign and foreign.rsplit(".", 2)[-1] in message',
        ): "rsplit('.', 2)[-1] is the same last piece as rsplit('.', 1)[-1]",
        (
            "keras_vit/inference.py",
            "_load_failure",
            '-if re.search(r"could not be deserialized|Could not locate|Cannot deserialize", message, re.IGNORECASE):\n+if re.search(r"COULD NOT BE DESERIALIZED|COULD NOT LOCATE|CANNOT DESERIALIZE", message, re.IGNORECASE):',
        ): "the pattern is matched with re.IGNORECASE: upper-casing it changes nothing",
        (
            "keras_vit/inference.py",
            "_load_failure",
            '-if re.search(r"could not be deserialized|Could not locate|Cannot deserialize", message, re.IGNORECASE):\n+if re.search(r"could not be deserialized|could not locate|cannot deserialize", message, re.IGNORECASE):',
        ): "the pattern is matched with re.IGNORECASE: lower-casing it changes nothing",
        (
            "keras_vit/inference.py",
            "check_finite_weights",
            "-if not np.isfinite(value.astype(np.float32, copy=False)).all():\n+if not np.isfinite(value.astype(np.float32, )).all():",
        ): "astype's copy argument only decides whether the array is copied, not its values",
        (
            "keras_vit/inference.py",
            "check_finite_weights",
            "-if not np.isfinite(value.astype(np.float32, copy=False)).all():\n+if not np.isfinite(value.astype(np.float32, copy=None)).all():",
        ): "astype's copy argument only decides whether the array is copied, not its values",
        (
            "keras_vit/inference.py",
            "check_finite_weights",
            "-if not np.isfinite(value.astype(np.float32, copy=False)).all():\n+if not np.isfinite(value.astype(np.float32, copy=True)).all():",
        ): "astype's copy argument only decides whether the array is copied, not its values",
        (
            "keras_vit/inference.py",
            "check_finite_weights",
            '-if value.dtype.kind in "biu":  # integer and boolean state (seeds, counters) is always finite\n+if value.dtype.kind in "BIU":  # integer and boolean state (seeds, counters) is always finite',
        ): "integer "
        "and "
        "boolean "
        "values "
        "are "
        "finite "
        "as "
        "float32 "
        "too "
        "(checking "
        "them "
        "instead "
        "of "
        "skipping "
        "them "
        "finds "
        "nothing); "
        "kind "
        "'U' "
        "(str) "
        "is "
        "no "
        "Keras "
        "variable's",
        (
            "keras_vit/inference.py",
            "check_finite_weights",
            '-if value.dtype.kind in "biu":  # integer and boolean state (seeds, counters) is always finite\n+if value.dtype.kind in "XXbiuXX":  # integer and boolean state (seeds, counters) is always finite',
        ): "'X' is no numpy dtype kind: the kinds skipped are still b, i, u",
        (
            "keras_vit/inference.py",
            "load_keras_model",
            "-return keras.saving.load_model(path, compile=compile, safe_mode=True)\n+return keras.saving.load_model(path, compile=compile, )",
        ): "keras.saving.load_model's safe_mode defaults to True: omitting it passes the same value",
        (
            "keras_vit/inference.py",
            "predict_logits",
            "-if size < batch_size and n > batch_size:\n+if size < batch_size and n >= batch_size:",
        ): "n == batch_size means one full batch (size == batch_size): no padding either way",
        (
            "keras_vit/inference.py",
            "predict_logits",
            "-if size < batch_size and n > batch_size:\n+if size <= batch_size and n > batch_size:",
        ): "size == batch_size then pads zero rows: the same batch",
        (
            "keras_vit/inference.py",
            "predict_logits",
            '-out = np.asarray(model.predict_on_batch(batch), dtype="float32")[:size]\n+out = np.asarray(model.predict_on_batch(batch), )[:size]',
        ): "the rows are cast to float32 anyway when stored in the float32 logits array",
        (
            "keras_vit/inference.py",
            "predict_logits",
            '-out = np.asarray(model.predict_on_batch(batch), dtype="float32")[:size]\n+out = np.asarray(model.predict_on_batch(batch), dtype=None)[:size]',
        ): "the rows are cast to float32 anyway when stored in the float32 logits array",
        (
            "keras_vit/inference.py",
            "predict_logits",
            '-with tqdm(total=n, desc=desc, unit="img", disable=None if progress else True, file=sys.stderr) as bar:\n+with tqdm(total=n, desc=desc, unit="img", disable=None if progress else True, ) as bar:',
        ): "tqdm's file defaults to None, which means sys.stderr, read in the same call",
        (
            "keras_vit/inference.py",
            "predict_logits",
            '-with tqdm(total=n, desc=desc, unit="img", disable=None if progress else True, file=sys.stderr) as bar:\n+with tqdm(total=n, desc=desc, unit="img", disable=None if progress else True, file=None) as bar:',
        ): "tqdm's file=None means sys.stderr, read in the same call",
    }
)

# keras_vit/training/callbacks.py (group "callbacks")
EQUIVALENT.update(
    {
        (
            "keras_vit/training/callbacks.py",
            "EpochBackup.__init__",
            '-super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)\n+super().__init__(backup_dir, delete_checkpoint=delete_checkpoint)',
        ): "save_freq='epoch' is BackupAndRestore's default (Keras 3.15)",
        (
            "keras_vit/training/callbacks.py",
            "EpochBackup._save_model",
            "-self.model.save_weights(tmp, overwrite=True)\n+self.model.save_weights(tmp, )",
        ): "overwrite=True is Model.save_weights' default",
        (
            "keras_vit/training/callbacks.py",
            "EpochBackup.on_epoch_end",
            "-self._last_batch_seen = 0\n+self._last_batch_seen = 1",
        ): "_last_batch_seen "
        "is "
        "read "
        "only "
        "by "
        "Keras' "
        "_save_model "
        "(overridden) "
        "and "
        "_should_save_on_batch, "
        "which "
        "returns "
        "before "
        "reading "
        "it "
        "when "
        "save_freq "
        "== "
        "'epoch' "
        "(always "
        "here)",
        (
            "keras_vit/training/callbacks.py",
            "EpochBackup.on_epoch_end",
            "-self._last_batch_seen = 0\n+self._last_batch_seen = None",
        ): "_last_batch_seen "
        "is "
        "read "
        "only "
        "by "
        "Keras' "
        "_save_model "
        "(overridden) "
        "and "
        "_should_save_on_batch, "
        "which "
        "returns "
        "before "
        "reading "
        "it "
        "when "
        "save_freq "
        "== "
        "'epoch' "
        "(always "
        "here)",
        (
            "keras_vit/training/callbacks.py",
            "EpochBackup.on_train_begin",
            '-_restore_random_states(self.model, metadata.get("random_states", []))\n+_restore_random_states(self.model, metadata.get("random_states", ))',
        ): "_restore_random_states returns on a falsy list before using it: None and [] act alike",
        (
            "keras_vit/training/callbacks.py",
            "EpochBackup.on_train_begin",
            '-_restore_random_states(self.model, metadata.get("random_states", []))\n+_restore_random_states(self.model, metadata.get("random_states", None))',
        ): "_restore_random_states returns on a falsy list before using it: None and [] act alike",
        (
            "keras_vit/training/callbacks.py",
            "EpochBackup.on_train_begin",
            "-super().on_train_begin(logs)  # a checkpoint written by Keras' own callback, or none\n+super().on_train_begin(None)  # a checkpoint written by Keras' own callback, or none",
        ): "BackupAndRestore.on_train_begin never reads its logs argument",
        (
            "keras_vit/training/callbacks.py",
            "TimeBudget.on_epoch_begin",
            "-super().on_epoch_begin(epoch, logs)\n+super().on_epoch_begin(None, logs)",
        ): "_FitClock.on_epoch_begin reads only the clock, never its epoch or logs arguments",
        (
            "keras_vit/training/callbacks.py",
            "TimeBudget.on_epoch_begin",
            "-super().on_epoch_begin(epoch, logs)\n+super().on_epoch_begin(epoch, )",
        ): "_FitClock.on_epoch_begin reads only the clock, never its epoch or logs arguments",
        (
            "keras_vit/training/callbacks.py",
            "TimeBudget.on_epoch_begin",
            "-super().on_epoch_begin(epoch, logs)\n+super().on_epoch_begin(epoch, None)",
        ): "_FitClock.on_epoch_begin reads only the clock, never its epoch or logs arguments",
        (
            "keras_vit/training/callbacks.py",
            "TimeBudget.on_epoch_begin",
            "-super().on_epoch_begin(epoch, logs)\n+super().on_epoch_begin(logs)",
        ): "_FitClock.on_epoch_begin reads only the clock, never its epoch or logs arguments",
        (
            "keras_vit/training/callbacks.py",
            "UnmaskedFinish.__init__",
            "-clock for clock in ([budget] if budget is not None else []) + list(clocks) if clock is not None\n+clock for clock in ([budget] if (budget is not None) or True else []) + list(clocks) if clock is not None",
        ): "a None budget put in the list is dropped by the comprehension's `if clock is not None` filter",
        (
            "keras_vit/training/callbacks.py",
            "UnmaskedFinish.__init__",
            "-self._layers = []\n+self._layers = None",
        ): "_layers is read only by hooks Keras calls after on_train_begin, which always reassigns it",
        (
            "keras_vit/training/callbacks.py",
            "_FitClock.__init__",
            "-self._phase_start = 0  # index of the first epoch timed at the current speed\n+self._phase_start = None  # index of the first epoch timed at the current speed",
        ): "_phase_start "
        "is "
        "only "
        "used "
        "as "
        "a "
        "slice "
        "start, "
        "where "
        "None "
        "and "
        "0 "
        "slice "
        "the "
        "same; "
        "expect_new_epoch_time "
        "reassigns "
        "it",
        (
            "keras_vit/training/callbacks.py",
            "_restore_random_states",
            "-variable.assign(np.asarray(state, dtype=variable.dtype))\n+variable.assign(np.asarray(state, ))",
        ): "Variable.assign "
        "converts "
        "the "
        "value "
        "to "
        "the "
        "variable's "
        "own "
        "dtype "
        "(checked "
        "on "
        "TF, "
        "JAX, "
        "torch), "
        "so "
        "the "
        "explicit "
        "dtype "
        "changes "
        "nothing",
        (
            "keras_vit/training/callbacks.py",
            "_restore_random_states",
            "-variable.assign(np.asarray(state, dtype=variable.dtype))\n+variable.assign(np.asarray(state, dtype=None))",
        ): "Variable.assign "
        "converts "
        "the "
        "value "
        "to "
        "the "
        "variable's "
        "own "
        "dtype "
        "(checked "
        "on "
        "TF, "
        "JAX, "
        "torch), "
        "so "
        "the "
        "explicit "
        "dtype "
        "changes "
        "nothing",
    }
)

# keras_vit/layers/patch_encoder.py (group "position")
EQUIVALENT.update(
    {
        (
            "keras_vit/layers/patch_encoder.py",
            "PatchEncoder.__init__",
            '-self.patch_norm_layer = LayerNorm(epsilon=1e-6, name="patch_norm", dtype=self.dtype_policy)\n+self.patch_norm_layer = LayerNorm(name="patch_norm", dtype=self.dtype_policy)',
        ): "LayerNorm's "
        "default "
        "epsilon "
        "is "
        "1e-6 "
        "(keras_vit/layers/norm.py), "
        "and "
        "the "
        "sublayer's "
        "config "
        "is "
        "not "
        "saved",
        (
            "keras_vit/layers/patch_encoder.py",
            "PatchEncoder.build",
            "-trainable=False,\n+trainable=None,",
        ): "Keras keeps bool(trainable): trainable=None makes the same non-trainable variable as False",
        (
            "keras_vit/layers/patch_encoder.py",
            "PatchEncoder.build",
            '-zeros = np.zeros((self.num_positioned_prefix_tokens, self.projection_dim), "float32")\n+zeros = np.zeros((self.num_positioned_prefix_tokens, self.projection_dim), )',
        ): "np.zeros's "
        "default "
        "dtype "
        "is "
        "float64: "
        "exactly "
        "the "
        "same "
        "values "
        "once "
        "the "
        "Constant "
        "initializer "
        "casts "
        "the "
        "table "
        "to "
        "the "
        "weight's "
        "dtype",
        (
            "keras_vit/layers/patch_encoder.py",
            "PatchEncoder.build",
            '-zeros = np.zeros((self.num_positioned_prefix_tokens, self.projection_dim), "float32")\n+zeros = np.zeros((self.num_positioned_prefix_tokens, self.projection_dim), None)',
        ): "np.zeros(..., "
        "None) "
        "is "
        "float64 "
        "zeros; "
        "concatenated "
        "with "
        "the "
        "float32 "
        "table "
        "they "
        "give "
        "a "
        "float64 "
        "table "
        "of "
        "exactly "
        "the "
        "same "
        "values, "
        "which "
        "the "
        "Constant "
        "initializer "
        "casts "
        "to "
        "the "
        "weight's "
        "dtype",
        (
            "keras_vit/layers/patch_encoder.py",
            "sincos_position_embedding",
            "-omega = 1.0 / temperature ** (np.arange(dim // 4) / (dim // 4))  # float64\n+omega = 1.0 / temperature ** (np.arange(dim / 4) / (dim // 4))  # float64",
        ): "dim "
        "is "
        "a "
        "multiple "
        "of "
        "4 "
        "(checked "
        "above), "
        "so "
        "np.arange(dim "
        "/ "
        "4) "
        "holds "
        "the "
        "same "
        "values "
        "as "
        "np.arange(dim "
        "// "
        "4), "
        "and "
        "both "
        "are "
        "divided "
        "into "
        "the "
        "same "
        "float64 "
        "exponents",
        (
            "keras_vit/layers/patch_encoder.py",
            "sincos_position_embedding",
            "-omega = 1.0 / temperature ** (np.arange(dim // 4) / (dim // 4))  # float64\n+omega = 1.0 / temperature ** (np.arange(dim // 4) / (dim / 4))  # float64",
        ): "dim is a multiple of 4 (checked above): dim / 4 == dim // 4, the same divisor",
    }
)

# export/verify.py (group "proof")
EQUIVALENT.update(
    {
        (
            "export/verify.py",
            "_check_dynamic_batch",
            "-batch_diff = float(np.abs(out.astype(np.float64) - reference.logits[:n]).max())\n+batch_diff = float(np.abs(out.astype(None) - reference.logits[:n]).max())",
        ): "ndarray.astype(None) is astype(float64): NumPy's default dtype",
        (
            "export/verify.py",
            "accuracy_percent",
            '-return float("nan")\n+return float("NAN")',
        ): 'float("NAN") is NaN, as float("nan")',
        (
            "export/verify.py",
            "prove",
            "-diff = np.abs(logits.astype(np.float64) - reference.logits)\n+diff = np.abs(logits.astype(None) - reference.logits)",
        ): "ndarray.astype(None) is astype(float64): NumPy's default dtype",
    }
)
