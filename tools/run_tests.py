"""Run `make test`'s three pytest jobs two at a time, each on one CPU thread.

    python tools/run_tests.py --floors FOLDER FLOOR_TESTS...

`make test` runs on 2 cores. The course's models are small, so most of PyTorch's work does
not split across threads: one pytest process on two threads leaves a core idle much of
the time, and two processes on two threads each make them wait on each other. Two
single-threaded processes side by side keep both cores busy:

- the notebooks re-run (nbval) in one process; its output goes to
  test-artifacts/notebooks.log and is printed when all jobs have ended;
- beside it, in the terminal: the unit tests, then the unit tests that also run under the
  lowest declared versions (`--floors` names their folder, put in front of the packages).

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


def run_jobs(floors: str, floor_tests: list[str], tmp: Path) -> dict[str, int]:
    """The three jobs' exit codes, by name."""
    env = {**os.environ, "QWEN_COURSE_QUICK": "1", "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    floors_env = {**env, "QWEN_COURSE_FLOORS": "1", "PYTHONPATH": floors}
    pytest = lambda job, *args: [sys.executable, "-m", "pytest", f"--basetemp={tmp / job}", *args]  # noqa: E731

    LOG.parent.mkdir(parents=True, exist_ok=True)
    print(f"the notebooks re-run beside the unit tests; their output: {LOG.relative_to(ROOT)}",
          flush=True)
    with open(LOG, "w") as log:
        notebooks = subprocess.Popen(pytest("notebooks", "notebooks", *NBVAL, "--durations=15"),
                                     cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            codes = {"unit tests": subprocess.call(pytest("tests", "tests", "--durations=15"),
                                                   cwd=ROOT, env=env)}
            print(f"\nunder the lowest declared versions ({floors}):", flush=True)
            codes["lowest versions"] = subprocess.call(pytest("floors", *floor_tests, "-q"),
                                                       cwd=ROOT, env=floors_env)
            codes["notebooks"] = notebooks.wait()
        finally:
            if notebooks.poll() is None:   # Ctrl-C or an error here: stop the notebooks too
                notebooks.terminate()
                notebooks.wait()
    print(f"\n---- the notebooks ({LOG.relative_to(ROOT)}) ----\n{LOG.read_text()}", flush=True)
    return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--floors", required=True,
                        help="the folder holding the lowest declared versions")
    parser.add_argument("floor_tests", nargs="+", help="the tests to run under them")
    args = parser.parse_args()
    start, tmp = time.perf_counter(), Path(tempfile.mkdtemp(prefix="qwen-course-tests-"))
    try:
        codes = run_jobs(args.floors, args.floor_tests, tmp)
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
