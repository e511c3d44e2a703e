"""`make mutants`: mutation testing of qwenlib's core modules with mutmut 3 (slow, so not part
of `make test`).

For each module it copies the repository's tracked files into a scratch folder, lets mutmut
change that module one small edit at a time (a `<` for a `<=`, a constant, a dropped
argument ...), and runs the tests that cover it against each change. A test suite that
notices a change "kills" the mutant; one that still passes lets it survive. The score is the
share of mutants detected: killed, or made to run past mutmut's time limit (an edit that
makes a loop endless is detected too). Survivors, with the edit each made, are written to
test-artifacts/mutants/<module>.txt: each is a test to write or a line saying why not
(an equivalent mutant, a message's wording).

    python tools/mutants.py                # every core module (about 30 min on 2 cores)
    python tools/mutants.py norm rope      # some of them (data: its split and windows;
                                           # data-all: the whole module; training: see ONLY)
    MUTANTS_JOBS=16 python tools/mutants.py training   # mutants run in parallel (default: cores)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test-artifacts" / "mutants"

# module -> the test files that exercise it (mutmut runs, of these, the tests that reach
# the mutated function)
CORE = {
    "norm": ["tests/test_model.py"],
    "rope": ["tests/test_model.py"],
    "attention": ["tests/test_model.py", "tests/test_generation.py"],
    "model": ["tests/test_model.py", "tests/test_bad_inputs.py", "tests/test_loss.py",
              "tests/test_generation.py"],
    "loss": ["tests/test_loss.py"],
    "muon": ["tests/test_muon.py", "tests/test_config.py"],
    "generation": ["tests/test_generation.py"],
    "training": ["tests/test_training.py"],
    "data": ["tests/test_data.py"],
    "data-all": ["tests/test_data.py"],
}
# Modules measured on some of their functions only (mutmut's name patterns): of training, the
# schedule, the evaluation and the state a checkpoint carries; the rest of the trainer (its
# loop, signals, saving) is exercised by whole training runs, too slow to repeat per mutant.
# Of data, the split and the windows (its cache and Hub code: `data-all`).
ONLY = {"data": ["qwenlib.data.x_split_tokens__mutmut_*", "qwenlib.data.x_make_dataloaders__mutmut_*",
                 "qwenlib.data.x\u01c1TextTokenDataset\u01c1*"],
        "training": ["qwenlib.training.x_lr_scale__mutmut_*",
                     "qwenlib.training.x_evaluation_sums__mutmut_*",
                     "qwenlib.training.x_metrics_from_sums__mutmut_*",
                     "qwenlib.training.x_evaluate__mutmut_*",
                     "qwenlib.training.x__new_history__mutmut_*",
                     "qwenlib.training.x\u01c1BatchStream\u01c1*",
                     "qwenlib.training.x\u01c1TrainingState\u01c1*",
                     "qwenlib.training.x\u01c1PretrainingTrainer\u01c1_evaluation_due__mutmut_*"]}
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}
NOT_RUN = {"not checked", "skipped"}


def scratch_copy(module: str) -> Path:
    """The repository's tracked files, in a new folder, with mutmut's settings for `module`."""
    folder = Path(tempfile.mkdtemp(prefix=f"qwen-course-mutants-{module}-"))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    top = sorted({name.split("/")[0] for name in files if name and not name.startswith("qwenlib/")})
    quoted = lambda items: ", ".join(f'"{i}"' for i in items)  # noqa: E731
    with open(folder / "pyproject.toml", "a") as f:
        f.write(f'\n[tool.mutmut]\nsource_paths = ["qwenlib/"]\n'
                f'only_mutate = ["qwenlib/{module.removesuffix("-all")}.py"]\n'
                f"pytest_add_cli_args_test_selection = [{quoted(CORE[module])}]\n"
                f"also_copy = [{quoted(top)}]\n")
    return folder


def statuses(folder: Path) -> dict[str, str]:
    """{mutant name: status} from `mutmut results --all true`."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=folder,
                         capture_output=True, text=True).stdout
    return dict(re.findall(r"(?m)^\s+(\S+__mutmut_\d+): (.+?)\s*$", out))


def measure(module: str, jobs: int) -> dict:
    folder = scratch_copy(module)
    start = time.perf_counter()
    # One thread per test process: mutmut forks a child per mutant from a parent that has
    # run the tests, and a child forked while torch's thread pool exists waits forever on
    # that pool's lock. Measured on muon before this line: 43 of 187 mutants "timed out"
    # at 57 s with no CPU time used (deadlocked, not slow), and counted as detected.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs),
                          *ONLY.get(module, [])], cwd=folder, env=env, capture_output=True, text=True)
    found = statuses(folder)
    counted = {n: s for n, s in found.items() if s not in NOT_RUN}
    survivors = sorted(n for n, s in counted.items() if s not in DETECTED)
    timeouts = sorted(n for n, s in counted.items() if s == "timeout")  # shown: check each
    report = [f"{module}: {len(found)} mutants, {len(counted)} run, "
              f"{len(counted) - len(survivors)} detected ({len(timeouts)} of them by the time "
              f"limit), {len(survivors)} not ({time.perf_counter() - start:.0f} s)"]
    for name in survivors + timeouts:
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=folder,
                              capture_output=True, text=True).stdout
        report.append(f"\n--- {name}: {counted[name]}\n{diff.strip()}")
    if run.returncode and not found:
        report.append("\nmutmut failed:\n" + run.stdout[-3000:] + run.stderr[-3000:])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{module}.txt").write_text("\n".join(report) + "\n")
    shutil.rmtree(folder, ignore_errors=True)  # the scratch copy this run made
    return dict(module=module, total=len(found), run=len(counted), survived=len(survivors),
                timeouts=len(timeouts),
                seconds=time.perf_counter() - start)


def main(argv: list[str]) -> int:
    modules = argv or list(CORE)
    unknown = [m for m in modules if m not in CORE]
    if unknown:
        print(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(CORE)}")
        return 2
    jobs = int(os.environ.get("MUTANTS_JOBS", os.cpu_count() or 2))
    rows = []
    for module in modules:
        row = measure(module, jobs)
        rows.append(row)
        score = (row["run"] - row["survived"]) / row["run"] if row["run"] else float("nan")
        print(f"{module:11} {row['run']:4} mutants run, {row['survived']:3} survived, "
              f"{row['timeouts']:3} timed out: "
              f"score {score:6.1%}  ({row['seconds'] / 60:.1f} min; survivors in "
              f"{(OUT / (module + '.txt')).relative_to(ROOT)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
