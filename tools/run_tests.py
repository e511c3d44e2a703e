"""Run `make test`'s three pytest jobs two at a time, each on one CPU thread.

    python tools/run_tests.py      (`make test` calls it, after the setup and the book)

`make test` runs on 2 cores. The course's models are small, so most of PyTorch's work does
not split across threads: one pytest process on two threads leaves a core idle much of
the time, and two processes on two threads each make them wait on each other. Two
single-threaded processes side by side keep both cores busy:

- the notebooks re-run (nbval) in one process; its output goes to
  test-artifacts/notebooks.log and is printed when all jobs have ended;
- beside it, in the terminal: the unit tests, then `make test-floors` (the unit tests that
  also run under the lowest declared versions).

Every job sees QWEN_COURSE_QUICK=1, HF_HUB_OFFLINE=1 and OMP_NUM_THREADS=1 (unless the
caller set a thread count), and a temporary folder of its own (pytest keeps only the last
three sessions' folders, so jobs side by side must not share its default one). The exit
status is 0 when every job passed, else 1; Ctrl-C stops them all (status 130).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "test-artifacts" / "notebooks.log"
NBVAL = ["--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]


def env_for(job: str, tmp: Path) -> dict[str, str]:
    """The environment of one job: QUICK, offline, one thread, a temporary folder of its own."""
    env = {**os.environ, "QWEN_COURSE_QUICK": "1", "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTEST_ADDOPTS"] = f"{env.get('PYTEST_ADDOPTS', '')} --basetemp={tmp / job}".strip()
    return env


def run_jobs(tmp: Path) -> dict[str, int]:
    """The three jobs' exit codes, by name."""
    pytest = [sys.executable, "-m", "pytest"]

    LOG.parent.mkdir(parents=True, exist_ok=True)
    print(f"the notebooks re-run beside the unit tests; their output: {LOG.relative_to(ROOT)}",
          flush=True)
    with open(LOG, "w") as log:
        notebooks = subprocess.Popen([*pytest, "notebooks", *NBVAL, "--durations=15"], cwd=ROOT,
                                     env=env_for("notebooks", tmp), stdout=log,
                                     stderr=subprocess.STDOUT)
        try:
            codes = {"unit tests": subprocess.call([*pytest, "tests", "--durations=15"], cwd=ROOT,
                                                   env=env_for("tests", tmp))}
            codes["lowest versions"] = subprocess.call(["make", "--no-print-directory", "test-floors"],
                                                       cwd=ROOT, env=env_for("floors", tmp))
            codes["notebooks"] = notebooks.wait()
        finally:
            if notebooks.poll() is None:   # Ctrl-C or an error here: stop the notebooks too
                notebooks.terminate()
                notebooks.wait()
    print(f"\n---- the notebooks ({LOG.relative_to(ROOT)}) ----\n{LOG.read_text()}", flush=True)
    return codes


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    start, tmp = time.perf_counter(), Path(tempfile.mkdtemp(prefix="qwen-course-tests-"))
    try:
        codes = run_jobs(tmp)
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [job for job, code in codes.items() if code != 0]
    print(f"{', '.join(failed) + ' failed' if failed else 'every job passed'} "
          f"({(time.perf_counter() - start) / 60:.1f} min for the three)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
