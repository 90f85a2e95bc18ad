"""Mutation testing of the modules that carry the README's guarantees, each against its own fast tests (mutmut).

    pip install mutmut==3.8.1
    python benchmarks/mutation_testing.py                 # every group (about 80 minutes on 2 shared cores)
    python benchmarks/mutation_testing.py patches proof   # some groups
    python benchmarks/mutation_testing.py --list
    python benchmarks/mutation_testing.py --report-only   # the report again from the groups' saved results

mutmut rewrites each function of a module into many small variants ("mutants": `<` for `<=`, `+` for `-`, a
constant changed, a call's argument dropped, ...) and runs the tests that reach the function against each; a
mutant no test fails on "survived". A survivor is either equivalent (no input tells it from the original: not a
missing test) or a guarantee the tests do not hold. `EQUIVALENT` (benchmarks/mutation_equivalents.py) lists the
survivors judged equivalent, each with the reason; the kill rate is killed / (mutants - equivalent).

Each group runs in a scratch copy of the working tree (the repository is never modified), in one mutmut run with
`--max-children` workers. Writes `mutation_report.json` and `mutation_report.md` (per module: mutants, killed,
survived, equivalent, no tests, timeouts, kill rate; every survivor's diff) to `--output`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keras_vit.cli_utils import positive_int  # noqa: E402
from keras_vit.files import atomic_write_json, atomic_write_text  # noqa: E402

# group: (modules mutated, the test files that hold their guarantees, and pytest's options to select them)
GROUPS = {
    "patches": (["keras_vit/layers/patches.py"], ["tests/layers/test_patches.py"]),
    "position": (["keras_vit/layers/patch_encoder.py"], ["tests/layers/test_patch_encoder.py"]),
    # test_dynamic_batch builds and converts a trained model (minutes) in every mutant's run: left out, the
    # proof's own tests call it with planted logits and a small SavedModel.
    "proof": (
        ["export/verify.py"],
        ["tests/export/test_verify.py", "--deselect", "tests/export/test_verify.py::test_dynamic_batch"],
    ),
    "schedule": (
        ["keras_vit/training/schedules.py", "keras_vit/training/plan.py"],
        ["tests/training/test_schedules.py", "tests/training/test_plan.py"],
    ),
    "callbacks": (["keras_vit/training/callbacks.py"], ["tests/training/test_callbacks.py"]),
    "loading": (["keras_vit/inference.py"], ["tests/test_inference.py"]),
}

# Survivors judged equivalent, each with why no test can kill it: benchmarks/mutation_equivalents.py.
sys.path.insert(0, str(ROOT / "benchmarks"))
from mutation_equivalents import EQUIVALENT  # noqa: E402

# Keras reads a layer's constructor arguments with inspect.getfullargspec, which does not see through
# mutmut's trampolines (inspect.signature does); the scratch copy's conftest unwraps them.
CONFTEST_SHIM = """

# Added by benchmarks/mutation_testing.py to its scratch copy only.
import inspect as _inspect  # noqa: E402

_original_getfullargspec = _inspect.getfullargspec


def _getfullargspec_through_trampolines(func):
    while getattr(getattr(func, "__code__", None), "co_name", "") == "_trampoline_wrapper":
        func = func.__wrapped__
    return _original_getfullargspec(func)


_inspect.getfullargspec = _getfullargspec_through_trampolines
"""

STATUS_LINE = re.compile(r"^\s*(?P<name>[\w.ǁ]+__mutmut_\d+): (?P<status>.+)$")
SKIPPED_FOLDERS = ("benchmarks/results/", "notebooks/", "docs/", "mutants/")


def scratch_copy(destination):
    """Copies the working tree's tracked and untracked, not ignored files (less results and notebooks)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if name.startswith(SKIPPED_FOLDERS) or not source.is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    with open(destination / "tests" / "conftest.py", "a") as conftest:
        conftest.write(CONFTEST_SHIM)


def write_mutmut_config(destination, modules, tests):
    lines = ["[mutmut]", "source_paths=", "    keras_vit", "    export", "only_mutate="]
    lines += [f"    {module}" for module in modules]
    lines += ["pytest_add_cli_args_test_selection="] + [f"    {test}" for test in tests]
    # One process per mutant run; the fork server keeps TensorFlow's threads out of mutmut's own process.
    lines += ["pytest_add_cli_args=", "    -n0", "    -q", "    -p", "    no:cacheprovider"]
    lines += ["also_copy=", "    benchmarks/"]  # scripts some tests run
    lines += ["process_isolation=forkserver", ""]
    (destination / "setup.cfg").write_text("\n".join(lines))


def mutant_diff(workdir, name):
    shown = subprocess.run(["mutmut", "show", name], cwd=workdir, capture_output=True, text=True)
    return shown.stdout.strip()


def changed_lines(diff):
    """The diff's removed and added lines, stripped: the key of an equivalent mutant."""
    return "\n".join(
        line[0] + line[1:].strip()
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def function_of(name):
    """`keras_vit.layers.patches.xǁPatchesǁcall__mutmut_3` -> `Patches.call`."""
    local = name.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
    if local.startswith("xǁ"):
        return ".".join(local[2:].split("ǁ"))
    return local.removeprefix("x_")


def module_of(name, modules):
    dotted = name.split(".x")[0]
    for module in modules:
        if module.removesuffix(".py").replace("/", ".") == dotted:
            return module
    return dotted


def run_group(name, max_children, timeout):
    modules, tests = GROUPS[name]
    with tempfile.TemporaryDirectory(prefix=f"mutation_{name}_") as scratch:
        workdir = Path(scratch)
        scratch_copy(workdir)
        write_mutmut_config(workdir, modules, tests)
        started = time.perf_counter()
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        run = subprocess.run(
            ["mutmut", "run", "--max-children", str(max_children)],
            cwd=workdir,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            lines = (run.stdout + run.stderr).replace("\r", "\n").splitlines()
            kept = [
                line
                for line in lines
                if line.strip()
                and not line.lstrip("⠁⠂⠄⡀⢀⠠⠐⠈⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ").startswith(("Generating", "Running"))
            ]
            raise RuntimeError(f"mutmut run of {name} exited {run.returncode}:\n" + "\n".join(kept[-40:]))
        listed = subprocess.run(
            ["mutmut", "results", "--all", "true"], cwd=workdir, capture_output=True, text=True, check=True
        ).stdout
        mutants = []
        for line in listed.splitlines():
            match = STATUS_LINE.match(line)
            if not match:
                continue
            mutant = {
                "name": match["name"],
                "module": module_of(match["name"], modules),
                "function": function_of(match["name"]),
                "status": match["status"].strip(),
            }
            if mutant["status"] != "killed":
                mutant["diff"] = mutant_diff(workdir, mutant["name"])
                key = (mutant["module"], mutant["function"], changed_lines(mutant["diff"]))
                if mutant["status"] == "survived" and key in EQUIVALENT:
                    mutant["status"] = "equivalent"
                    mutant["why"] = EQUIVALENT[key]
            mutants.append(mutant)
    return {
        "group": name,
        "modules": modules,
        "tests": tests,
        "seconds": round(seconds, 1),
        "mutants": mutants,
    }


def judged(group):
    """`group` with its survivors' equivalence judged again from `EQUIVALENT` (for `--report-only`)."""
    for mutant in group["mutants"]:
        if mutant["status"] not in ("survived", "equivalent"):
            continue
        key = (mutant["module"], mutant["function"], changed_lines(mutant["diff"]))
        if key in EQUIVALENT:
            mutant.update(status="equivalent", why=EQUIVALENT[key])
        else:
            mutant["status"] = "survived"
            mutant.pop("why", None)
    return group


def saved_groups(output, names):
    """The groups' results a previous run saved in `output` (`group_NAME.json`), re-judged."""
    groups = []
    for name in names:
        path = output / f"group_{name}.json"
        if path.exists():
            groups.append(judged(json.loads(path.read_text())))
        else:
            print(f"warning: no {path}: group {name} left out of the report", file=sys.stderr)
    return groups


def module_rows(groups):
    rows = []
    for group in groups:
        for module in group["modules"]:
            mine = [m for m in group["mutants"] if m["module"] == module]
            count = {status: sum(m["status"] == status for m in mine) for status in _STATUSES}
            others = len(mine) - sum(count.values())
            judged = len(mine) - count["equivalent"]
            rows.append(
                {
                    "group": group["group"],
                    "module": module,
                    "mutants": len(mine),
                    **count,
                    "other": others,
                    "kill_rate": count["killed"] / judged if judged else None,
                }
            )
    return rows


_STATUSES = ("killed", "survived", "equivalent", "no tests", "timeout", "suspicious")


def markdown(groups, rows, machine):
    lines = [
        f"Mutation testing (mutmut), {machine['cpu']}, {machine['cores_available']} cores.",
        "",
        "| module | mutants | killed | survived | equivalent | no tests | timeout | kill rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        rate = "n/a" if row["kill_rate"] is None else f"{row['kill_rate']:.1%}"
        lines.append(
            f"| `{row['module']}` | {row['mutants']} | {row['killed']} | {row['survived']} | "
            f"{row['equivalent']} | {row['no tests']} | {row['timeout']} | {rate} |"
        )
    for group in groups:
        left = [m for m in group["mutants"] if m["status"] not in ("killed",)]
        if not left:
            continue
        lines += ["", f"### {group['group']}: mutants not killed ({group['seconds']:.0f} s)", ""]
        for mutant in left:
            why = f": {mutant['why']}" if mutant.get("why") else ""
            lines += [
                f"- `{mutant['name']}` {mutant['status']}{why}",
                "",
                "```diff",
                changed_lines(mutant["diff"]),
                "```",
            ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("groups", nargs="*", help=f"groups to run (default: all of {', '.join(GROUPS)})")
    parser.add_argument("--list", action="store_true", help="print the groups, their modules and tests")
    parser.add_argument("--max-children", type=positive_int, default=2, help="parallel mutant runs")
    parser.add_argument("--timeout", type=positive_int, default=3600, help="seconds a group may take")
    parser.add_argument("--output", default="runs/mutation", help="folder of the reports")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the report again from the group_*.json files in --output, the survivors "
        "judged against EQUIVALENT as it is now",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, (modules, tests) in GROUPS.items():
            print(f"{name}: {' '.join(modules)} <- {' '.join(tests)}")
        return 0
    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group {', '.join(unknown)}; --list shows them")
    if args.report_only:
        return write_report(Path(args.output), saved_groups(Path(args.output), args.groups or list(GROUPS)))
    if shutil.which("mutmut") is None:
        print("error: mutmut is not installed (pip install mutmut==3.8.1)", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    groups, failed = [], []
    for name in args.groups or list(GROUPS):
        print(f"{name}: mutating {' '.join(GROUPS[name][0])}", flush=True)
        try:
            groups.append(run_group(name, args.max_children, args.timeout))
        except (RuntimeError, subprocess.SubprocessError) as error:  # the other groups still run
            print(f"error: {error}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        # Each group's mutants as soon as it ends: a long run's finished groups are never lost.
        atomic_write_json(output / f"group_{name}.json", groups[-1])
    status = write_report(output, groups)
    if failed:
        print(f"error: mutmut could not run {', '.join(failed)} (above)", file=sys.stderr)
        return 1
    return status


def write_report(output, groups):
    """Prints each module's kill rate and writes `mutation_report.json` and `.md` to `output`."""
    from keras_vit.device import machine_summary

    rows = module_rows(groups)
    for row in rows:
        rate = "n/a" if row["kill_rate"] is None else f"{row['kill_rate']:.1%}"
        print(
            f"{row['module']}: {row['killed']}/{row['mutants'] - row['equivalent']} killed ({rate})",
            flush=True,
        )
    machine = machine_summary()
    atomic_write_json(
        output / "mutation_report.json", {"machine": machine, "modules": rows, "groups": groups}
    )
    atomic_write_text(output / "mutation_report.md", markdown(groups, rows, machine))
    print(f"Wrote {output}/mutation_report.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
