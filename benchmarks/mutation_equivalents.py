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
