"""`make gpu-check`: everything that needs a CUDA GPU, in one go, with what it measured
written to one file.

    python tools/gpu_check.py [--out DIR] [--skip-chapter9]

1. the pytest tests marked `cuda` (tests/test_cuda.py): hundreds of updates in the GPU's
   precision, one update under torch.cuda.set_sync_debug_mode("error"), resume on CUDA,
   KV-cache generation, Muon against its fp32 run;
2. chapters 9 and 9b executed in their full mode (the GPU makes it full by itself), wall time
   printed; the executed notebook is kept in DIR so its outputs can be committed;
3. benchmarks/train_step.py and benchmarks/generate.py on the GPU.

DIR is $OUT when set (the device tool's output folder), else test-artifacts/gpu-check.
Without a GPU it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(step: str, command: list[str], log, timeout: float, env=None) -> dict:
    """Run one step, its output teed to the log; (name, exit code, seconds, output tail)."""
    print(f"== {step}: {' '.join(command)}", flush=True)
    log.write(f"\n== {step}: {' '.join(command)}\n")
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        output, code = output + f"\n(timed out after {timeout:.0f} s)", 124
    seconds = time.perf_counter() - start
    log.write(output)
    log.flush()
    print(output[-4000:], flush=True)
    return {"step": step, "exit_code": code, "seconds": round(seconds, 1), "tail": output[-3000:]}


def execute_notebook(source: str, destination: str) -> None:
    """Run a notebook top to bottom in its own folder (as Jupyter does) and save it."""
    import nbclient
    import nbformat

    nb = nbformat.read(ROOT / source, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str((ROOT / source).parent)}}).execute()
    nbformat.write(nb, destination)
    print(f"executed {source} in {time.perf_counter() - start:.0f} s -> {destination}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", nargs=2, metavar=("NOTEBOOK", "DEST"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "test-artifacts" / "gpu-check"))
    parser.add_argument("--skip-chapter9", action="store_true", help="tests and benchmarks only")
    args = parser.parse_args()
    if args.execute:
        execute_notebook(*args.execute)
        return 0

    import torch
    if not torch.cuda.is_available():
        print("gpu-check: skipped: no CUDA GPU here (torch.cuda.is_available() is False); "
              "run it on a machine with one")
        return 0

    from qwenlib.runtime import training_dtype
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    summary = {"gpu": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability()),
               "torch": torch.__version__, "training_dtype": str(training_dtype(device)), "steps": []}
    print(f"gpu-check on {summary['gpu']} (compute capability {summary['capability']}), "
          f"torch {summary['torch']}, training precision {summary['training_dtype']}", flush=True)
    py = sys.executable
    with open(out / "gpu-check.log", "w", encoding="utf-8") as log:
        summary["steps"].append(run("cuda tests", [py, "-m", "pytest", "tests/test_cuda.py", "-m", "cuda",
                                                   "-v", "-s", "-p", "no:cacheprovider"], log, 240,
                                    env={"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}))
        if not args.skip_chapter9:
            summary["steps"].append(run(
                "chapter 9, full run",
                [py, __file__, "--execute", "notebooks/09_train_the_model.ipynb",
                 str(out / "09_train_the_model.ipynb")], log, 420, env={"QWEN_COURSE_FULL_RUN": "1"}))
            summary["steps"].append(run(
                "chapter 9b, full run",
                [py, __file__, "--execute", "notebooks/09b_muon_vs_adamw.ipynb",
                 str(out / "09b_muon_vs_adamw.ipynb")], log, 420, env={"QWEN_COURSE_FULL_RUN": "1"}))
        summary["steps"].append(run("benchmark: train step", [py, "benchmarks/train_step.py", "--steps", "5"],
                                    log, 120))
        summary["steps"].append(run("benchmark: generation", [py, "benchmarks/generate.py"], log, 120))
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    failed = [s["step"] for s in summary["steps"] if s["exit_code"] != 0]
    print("gpu-check: " + ("all steps passed" if not failed else f"failed: {', '.join(failed)}")
          + f"; results in {out}/gpu-check.json and gpu-check.log")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
