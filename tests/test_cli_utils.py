"""Tests for keras_vit.cli_utils: one-line errors and the argparse value types."""

import argparse
import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT, signal_inside_a_gc_callback

from keras_vit import cli_utils
from keras_vit.cli_utils import (
    MAX_LINE,
    CLIError,
    check_output_folder,
    first_line,
    missing_folders,
    non_negative_float,
    non_negative_int,
    output_folder,
    positive_float,
    positive_int,
    print_error,
    remove_empty_folders,
    unit_fraction,
)


def test_what_a_command_prints_is_one_line_warnings_and_never_an_encoding_error():
    """Skipped images were reported as `/.../keras_vit/training/pipeline.py:107: UserWarning: Skipped ...` and the
    source line that warned; a class name the output's encoding cannot write (a file on Windows, in cp1252) was a
    `UnicodeEncodeError` that stopped the command."""
    from conftest import run_python

    code = (
        "import sys, warnings\n"
        "from keras_vit.cli_utils import console_output\n"
        "def main():\n"
        "    warnings.warn('Skipped 1 unreadable image(s) under DIR')\n"
        "    print('1. \\u732b 97.5%')\n"
        "    return 3\n"
        "status = console_output(main)()\n"
        "warnings.warn('after the command')\n"
        "sys.exit(status)\n"
    )
    done = run_python(code, env={"PYTHONIOENCODING": "cp1252"})
    assert done.returncode == 3, done.stderr
    assert done.stdout == "1. \\u732b 97.5%\n"  # escaped, not an error
    lines = done.stderr.splitlines()
    assert lines[0] == "warning: Skipped 1 unreadable image(s) under DIR", done.stderr
    assert "UserWarning: after the command" in lines[1]  # the format is the command's only while it runs


def test_wildcards_are_expanded_on_windows_only(tmp_path, monkeypatch):
    """cmd and PowerShell pass `imgs\\*.jpg` as it is: predict and export.runtime said it did not exist."""
    for name in ("b.jpg", "a.jpg", "c.png", "odd[1].jpg"):
        (tmp_path / name).write_bytes(b"")
    pattern, missing = str(tmp_path / "*.jpg"), str(tmp_path / "none*.jpg")
    literal = str(tmp_path / "odd[1].jpg")  # a name that exists is itself, brackets or not
    assert cli_utils.expand_wildcards([pattern, literal]) == [pattern, literal]  # a POSIX shell expanded them
    monkeypatch.setattr(cli_utils.sys, "platform", "win32")
    assert cli_utils.expand_wildcards([pattern, missing, literal]) == [
        *(str(tmp_path / name) for name in ("a.jpg", "b.jpg", "odd[1].jpg")),
        missing,  # matches nothing: left for the command to say it does not exist
        literal,
    ]


def test_first_line():
    assert first_line(ValueError("\n  bad value  \nmore detail")) == "bad value"
    assert first_line(OSError("disk full"), with_type=True) == "OSError: disk full"
    assert (
        first_line(KeyError()) == "KeyError"
        and first_line(RuntimeError(""), with_type=True) == "RuntimeError"
    )
    assert len(first_line(ValueError("x" * 1000))) == MAX_LINE
    assert issubclass(CLIError, Exception)


def test_print_error(capsys):
    print_error(CLIError("model file m.keras does not exist"))
    print_error("Could not find CIFAR-10. Tried:\n  1. here")
    print_error("a\n   b", one_line=True)
    assert capsys.readouterr().err.splitlines() == [
        "error: model file m.keras does not exist",
        "error: Could not find CIFAR-10. Tried:",
        "  1. here",
        "error: a b",
    ]


def parse(kind, text):
    parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
    parser.add_argument("--v", type=kind)
    return parser.parse_args(["--v", text]).v


def test_argument_types(capsys):
    assert positive_int("3") == 3 and non_negative_int("0") == 0 and unit_fraction("0.25") == 0.25
    assert unit_fraction("0") == 0.0
    assert positive_float("3e-3") == 0.003 and non_negative_float("0") == 0.0
    for kind, text, message in (
        (positive_float, "0", "a positive number, got 0"),
        (positive_float, "-1e-3", "a positive number, got -1e-3"),
        (positive_float, "inf", "a positive number, got inf"),
        (non_negative_float, "-2", "a number >= 0, got -2"),
        (non_negative_float, "nan", "a number >= 0, got nan"),
        (non_negative_float, "lots", "a number >= 0, got 'lots'"),
        (positive_int, "0", "a positive integer, got 0"),
        (positive_int, "two", "a positive integer, got 'two'"),
        (non_negative_int, "-1", "a non-negative integer, got -1"),
        (unit_fraction, "1", "must be in [0, 1), got 1"),
        (unit_fraction, "half", "a number in [0, 1), got 'half'"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            kind(text)
        with pytest.raises(argparse.ArgumentError, match="expected|must be"):
            parse(kind, text)


@pytest.mark.parametrize(
    "command, flag, value",
    [
        ("keras_vit.train", "--learning-rate", "-1"),
        ("keras_vit.train", "--label-smoothing", "2"),
        ("keras_vit.train", "--weight-decay", "-3"),
        ("keras_vit.train", "--warmup-epochs", "-2"),
        ("keras_vit.train", "--clipnorm", "-1"),
        ("keras_vit.teacher", "--learning-rate", "0"),
        ("keras_vit.teacher", "--label-smoothing", "3"),
        ("export.onnx", "--atol", "-1"),
        ("export.benchmark", "--threads", "-3"),
        ("export.runtime", "--threads", "-2"),
    ],
)
def test_commands_refuse_numbers_out_of_their_range(command, flag, value, capsys):
    """A negative learning rate, a smoothing above 1, a negative tolerance or thread count: a usage error in one
    line before any work (they trained, or ran for minutes, and exited 0 or failed late)."""
    import importlib

    parser_argv = {"export.onnx": ["m.keras", "m.onnx"], "export.runtime": ["m.onnx", "x.jpg"]}
    main = importlib.import_module(command).main
    argv = [*parser_argv.get(command, ["d"] if command == "export.benchmark" else []), flag, value]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {flag}: " in capsys.readouterr().err


def test_check_output_folder(tmp_path, monkeypatch):
    nested = tmp_path / "a" / "b"
    assert check_output_folder(nested) == nested and nested.is_dir()
    assert list(nested.iterdir()) == []  # the probe file is gone
    assert check_output_folder(str(nested), min_free_bytes=1) == nested
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(
        CLIError, match=rf"^output folder {re.escape(str(a_file))} exists and is not a folder$"
    ):
        check_output_folder(a_file)
    with pytest.raises(CLIError, match=r"^cannot create --output .*file.txt.sub: a part of it is a file$"):
        check_output_folder(a_file / "sub", what="--output")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(CLIError, match=r"^cannot write to output folder .*locked: Permission denied$"):
            check_output_folder(locked)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as patch:
        patch.setattr(cli_utils.tempfile, "mkstemp", read_only)
        with pytest.raises(CLIError, match=r"^cannot write to output folder .*b: Read-only file system$"):
            check_output_folder(nested)
    monkeypatch.setattr(cli_utils.shutil, "disk_usage", lambda path: SimpleNamespace(free=1_500_000))
    with pytest.raises(
        CLIError, match=r"^output folder .*b has 1.5 MB free on its disk; at least 2.0 GB needed$"
    ):
        check_output_folder(nested, min_free_bytes=2 * 10**9)
    assert check_output_folder(nested, min_free_bytes=1_500_000) == nested


def test_output_folder_removes_the_folders_it_made_when_nothing_was_written(tmp_path, monkeypatch):
    made = tmp_path / "runs" / "a"
    with pytest.raises(CLIError, match="no data"):
        with output_folder(made) as folder:
            assert folder == made and made.is_dir()
            raise CLIError("no data")
    assert list(tmp_path.iterdir()) == []  # `runs` too: it made both
    with output_folder(made):
        (made / "result.json").write_text("{}")
    assert (made / "result.json").exists()  # written: kept
    with output_folder(tmp_path / "runs" / "b"):
        pass
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a"]  # `runs` was there before: kept
    (tmp_path / "mine").mkdir()
    with output_folder(tmp_path / "mine"):
        pass
    assert (tmp_path / "mine").is_dir()  # the user's empty folder is not the command's to remove
    monkeypatch.setattr(cli_utils.shutil, "disk_usage", lambda path: SimpleNamespace(free=1))
    with pytest.raises(CLIError, match="1 bytes free"):
        with output_folder(tmp_path / "full" / "c", min_free_bytes=10):
            pass
    assert not (tmp_path / "full").exists()  # refused by its check: what the check made goes too


def test_remove_empty_folders_keeps_a_folder_with_anything_but_its_leftovers(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / ".lock").write_text("")
    (tmp_path / "a" / "other").write_text("x")
    remove_empty_folders([deep, deep.parent], leftovers={".lock"})
    assert not deep.exists() and (tmp_path / "a" / "other").exists()  # stops at the first folder in use
    deep.mkdir()
    (deep / "model.keras").write_text("x")
    (deep / ".lock").write_text("")
    remove_empty_folders([deep], leftovers={".lock"})
    assert sorted(p.name for p in deep.iterdir()) == [".lock", "model.keras"]
    assert missing_folders(tmp_path / "x" / "y") == [tmp_path / "x" / "y", tmp_path / "x"]
    assert missing_folders(deep) == []


def test_stop_on_signals_raises_on_sigint_and_sigterm_even_when_started_ignoring_sigint():
    """A run started in the background by a script inherits SIGINT ignored; in the block it still stops, and
    the handlers are as the block found them after it."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), cli_utils.stop_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # interrupted by the handler at once
        with pytest.raises(cli_utils.Terminated), cli_utils.stop_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, "Terminated")]
)
def test_a_signal_whose_exception_was_dropped_is_raised_again(signum, raised):
    raised = getattr(cli_utils, raised) if isinstance(raised, str) else raised
    went_on = []
    with pytest.raises(raised), cli_utils.stop_on_signals():
        signal_inside_a_gc_callback(signum)
        went_on.append(True)  # the exception was dropped: the block goes on
        cli_utils.raise_if_signalled()
    assert went_on
    cli_utils.raise_if_signalled()  # a new block, or none, starts clean
    with cli_utils.stop_on_signals():
        cli_utils.raise_if_signalled()


def test_stop_on_signals_outside_the_main_thread_leaves_the_handlers():
    seen = []

    def block():
        with cli_utils.stop_on_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=block)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]


@pytest.mark.parametrize(
    "module", ["keras_vit.recipes", "keras_vit.predict", "keras_vit.evaluate", "export.runtime"]
)
def test_commands_that_print_listings_end_quietly_on_a_closed_pipe(module):
    """Each command whose output is read through a pipe (`| head`) has its main wrapped (the wrapper itself is
    tested end to end by tests/training/test_recipes.py)."""
    import importlib

    main = importlib.import_module(module).main
    assert main.__code__ is cli_utils.exits_quietly_on_closed_stdout(print).__code__  # the wrapper's own code


def test_a_closed_stdout_is_status_141_and_a_failing_main_still_raises(monkeypatch):
    pointed = []
    monkeypatch.setattr(cli_utils.os, "dup2", lambda source, target: pointed.append(target))

    def closed():
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    assert cli_utils.exits_quietly_on_closed_stdout(closed)() == 141 and pointed  # stdout now goes nowhere
    assert cli_utils.exits_quietly_on_closed_stdout(lambda: 3)() == 3

    def fails():
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        cli_utils.exits_quietly_on_closed_stdout(fails)()

    def closed_on_windows():  # Windows says EINVAL where POSIX says EPIPE (cpython#79935)
        raise OSError(errno.EINVAL, "Invalid argument")

    with pytest.raises(OSError):  # elsewhere it is an error of its own
        cli_utils.exits_quietly_on_closed_stdout(closed_on_windows)()
    monkeypatch.setattr(cli_utils.sys, "platform", "win32")
    with pytest.raises(OSError):  # on Windows too while the output still takes what is written
        cli_utils.exits_quietly_on_closed_stdout(closed_on_windows)()

    class ClosedPipe:
        def flush(self):
            raise OSError(errno.EINVAL, "Invalid argument")

        def fileno(self):
            return 1

    monkeypatch.setattr(cli_utils.sys, "stdout", ClosedPipe())
    assert cli_utils.exits_quietly_on_closed_stdout(closed_on_windows)() == 141


def test_ctrl_c_before_a_command_sets_its_handling_is_one_line(capsys):
    """Ctrl-C while `python -m keras_vit.train` imports Keras printed a traceback of the import machinery."""

    def importing():
        raise KeyboardInterrupt

    assert cli_utils.interrupted_in_one_line(importing)() == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert cli_utils.interrupted_in_one_line(lambda: 0)() == 0


@pytest.mark.parametrize(
    "module",
    ["train", "teacher", "predict", "evaluate", "convert/__main__"],
    ids=lambda name: name.split("/")[0],
)
def test_each_keras_command_runs_its_main_through_the_ctrl_c_line(module):
    """A Ctrl-C in a command's first seconds (Keras and its backend importing, inside `main`) is caught only if
    the command's `__main__` line wraps `main` in `interrupted_in_one_line`: the convert, predict and evaluate
    commands printed a traceback of the import machinery instead."""
    source = (REPO_ROOT / "keras_vit" / f"{module}.py").read_text()
    entry = source[source.index('if __name__ == "__main__":') :]
    assert "sys.exit(interrupted_in_one_line(" in entry, entry


def test_a_missing_module_other_than_a_backend_keeps_its_traceback():
    """Only jax and torch themselves (the backends the package does not install) become the one line; another
    missing module, or a missing part of an installed backend, is a bug or a broken install, raised as it is."""

    def needs(module):
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    for module in ("scipy", "jax.experimental.missing"):
        with pytest.raises(ModuleNotFoundError, match=module):
            cli_utils.missing_backend_in_one_line(needs)(module)
    assert cli_utils.missing_backend_in_one_line(needs)("jax") == 2


SHIPPED_MODEL = REPO_ROOT / "keras_vit" / "pretrained" / "vit_cifar10.keras"


@pytest.mark.parametrize(
    ("command", "backend"),
    [("predict", "jax"), ("evaluate", "torch"), ("train", "jax"), ("teacher", "torch")],
)
def test_a_keras_backend_that_is_not_installed_is_one_line(tmp_path, command, backend):
    """KERAS_BACKEND naming a backend the machine lacks (its module made absent): each command that loads Keras
    says in one line what to install, status 2, not the traceback of Keras' import."""
    absent = tmp_path / "absent" / backend
    absent.mkdir(parents=True)
    (absent / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{backend}'\", name='{backend}')\n"
    )
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the backend is loaded first
    arguments = {
        "predict": [SHIPPED_MODEL, image],
        "evaluate": [SHIPPED_MODEL, "--data-dir", tmp_path, "--output", tmp_path / "out"],
        "train": ["--data-dir", tmp_path, "--output", tmp_path / "out"],
        "teacher": ["--data-dir", tmp_path, "--output", tmp_path / "out"],
    }[command]
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        PYTHONPATH=os.pathsep.join([str(absent.parent), str(REPO_ROOT)]),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    proc = subprocess.run(
        [sys.executable, "-m", f"keras_vit.{command}", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    install = {"jax": "jax[cpu]", "torch": "torch"}[backend]
    assert proc.stderr.strip().splitlines() == [
        f"error: the Keras backend {backend} is not installed: pip install '{install}'"
    ]


def test_a_folder_where_a_file_is_expected_and_the_reverse_are_named(tmp_path, capsys):
    """train --teacher FOLDER said "no such file", export.benchmark FILE "does not exist": each now says what
    it found."""
    from export import benchmark, common
    from keras_vit.train import check_args, parse_args

    assert check_args(parse_args(["--teacher", str(tmp_path)])) == (
        f"--teacher {tmp_path}: a folder, not a .keras file"
    )
    a_file = tmp_path / "model.onnx"
    a_file.write_bytes(b"")
    assert common.run_cli(benchmark.main, [str(a_file)]) == 2
    assert capsys.readouterr().err.strip() == f"error: export directory {a_file} is a file, not a folder."
