"""Chapter 10: data-parallel training in several processes (gloo on this CPU)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from qwenlib import PretrainingConfig, load_and_cache_data, make_dataloaders
from qwenlib.distributed import DistributedTrainer, ShardedSampler, shard_loader
from qwenlib.training import PretrainingTrainer, load_checkpoint

WORKER = ROOT / "tests" / "ddp_worker.py"
# per-process batch 2, accumulation 2 (so no_sync is used), no dropout (so runs can agree),
# eval_steps large enough that every validation window is scored whatever the sharding
TINY = dict(vocab_size=8192, max_seq_len=32, batch_size=2, gradient_accumulation_steps=2,
            max_steps=4, eval_every=2, eval_steps=50, max_tokens=3000, num_documents=20,
            dropout=0.0)
LOSS_TOL, WEIGHT_TOL = 1e-5, 1e-5  # float sums in another order: measured up to 1.5e-6


def env(**extra):
    return {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp_cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    load_and_cache_data(PretrainingConfig(cache_dir=str(folder), **TINY), verbose=False)
    return folder


def config(cache, out, **overrides):
    return PretrainingConfig(cache_dir=str(cache), output_dir=str(out), **{**TINY, **overrides})


def single(cache, out, stop_after=None, resume_from=None, **overrides):
    """One process with the global batch: batch_size 4 = 2 processes x 2."""
    c = config(cache, out, batch_size=4, **overrides)
    loaders = make_dataloaders(c, load_and_cache_data(c, verbose=False)[2])
    PretrainingTrainer(c, "cpu", verbose=False).train(*loaders, stop_after=stop_after,
                                                      resume_from=resume_from)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cache, out, world_size=2, **args):
    """Start `world_size` processes of tests/ddp_worker.py, as torchrun would."""
    args = {"config": {**TINY, "cache_dir": str(cache), "output_dir": str(out)}, **args}
    port = str(free_port())
    return [subprocess.Popen([sys.executable, str(WORKER), json.dumps(args)], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world_size),
                                     MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
            for r in range(world_size)]


def finish(procs, timeout=120):
    results = [(p.wait(timeout), *p.communicate()) for p in procs]
    for code, _, err in results:
        assert code == 0, err
    return results


def history(out):
    return json.loads((out / "metrics.json").read_text())["history"]


def weights(path):
    return load_checkpoint(path)["model"]


def assert_same_run(a, b):
    ha, hb = history(a), history(b)
    assert ha["step"] == hb["step"] and ha["eval_step"] == hb["eval_step"]
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert ha[key] == pytest.approx(hb[key], abs=LOSS_TOL), key
    wa, wb = weights(a / "final_model1.pt"), weights(b / "final_model1.pt")
    assert wa.keys() == wb.keys()
    gaps = {name: (wa[name] - wb[name]).abs().max().item() for name in wa}
    loss_gap = max(abs(x - y) for key in ("train_loss", "val_loss")
                   for x, y in zip(ha[key], hb[key]))
    print(f"{a.name} vs {b.name}: largest loss difference {loss_gap:.1e}, "
          f"weight difference {max(gaps.values()):.1e}")  # shown by pytest -s
    assert max(gaps.values()) <= WEIGHT_TOL, max(gaps, key=gaps.get)


def test_one_shard_reads_exactly_what_the_single_process_loader_reads(cache):
    c = config(cache, "unused")
    loader, _ = make_dataloaders(c, load_and_cache_data(c, verbose=False)[2])
    twin, _ = make_dataloaders(c, load_and_cache_data(c, verbose=False)[2])
    alone = shard_loader(twin, rank=0, world_size=1)
    for _ in range(2):  # two epochs: the generator moves on identically
        for (xa, ya), (xb, yb) in zip(loader, alone, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_the_shards_of_a_batch_are_the_single_process_batch_of_twice_the_size():
    n, b = 103, 4
    one = list(ShardedSampler(n, 0, 1, True, torch.Generator().manual_seed(5)))
    shards = [list(ShardedSampler(n, r, 2, True, torch.Generator().manual_seed(5)))
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == n // 2
    assert not set(shards[0]) & set(shards[1])
    for k in range(len(shards[0]) // b):
        together = shards[0][k * b:(k + 1) * b] + shards[1][k * b:(k + 1) * b]
        assert sorted(together) == sorted(one[2 * b * k:2 * b * (k + 1)])


def test_validation_shards_score_every_window_once():
    shards = [list(ShardedSampler(10, r, 3, shuffle=False, drop_last=False)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert [len(s) for s in shards] == [len(ShardedSampler(10, r, 3, False, drop_last=False))
                                        for r in range(3)]


def test_torchrun_two_processes_train_like_one_process_with_twice_the_batch(cache, tmp_path):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "batch_size"]
    flags += [f"--cache-dir={cache}"]
    one = subprocess.run([sys.executable, "-m", "qwenlib", "train", *flags, "--batch-size=4",
                          f"--output-dir={tmp_path / 'one'}"], capture_output=True, text=True,
                         env=env(), cwd=tmp_path, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "qwenlib", "train", *flags,
                          "--batch-size=2", f"--output-dir={tmp_path / 'two'}"],
                         capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=300)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("sample (greedy):") == 1  # only process 0 reports
    assert "process 1 of 2 on cpu" in two.stdout and "4 updates" in two.stdout
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_checkpoints_move_between_one_and_several_processes(cache, tmp_path):
    straight = single(cache, tmp_path / "straight")
    # two processes stop after 2 updates; one process resumes and finishes
    results = finish(launch(cache, tmp_path / "ddp_then_one", stop_after=2))
    hashes = {out.split("weights ")[1].strip() for _, out, _ in results}
    assert len(hashes) == 1  # Muon and AdamW took bit-identical steps in both processes
    single(cache, tmp_path / "ddp_then_one", resume_from=tmp_path / "ddp_then_one" / "latest.pt")
    assert_same_run(straight, tmp_path / "ddp_then_one")
    # and the other way: one process stops, two resume
    single(cache, tmp_path / "one_then_ddp", stop_after=2)
    finish(launch(cache, tmp_path / "one_then_ddp",
                  resume_from=str(tmp_path / "one_then_ddp" / "latest.pt")))
    assert_same_run(straight, tmp_path / "one_then_ddp")


@pytest.mark.parametrize("how", ["die", "hang"])
def test_a_failed_process_stops_the_others_with_a_clear_message(cache, tmp_path, how):
    # process 1 fails while reading update 3's batches; the timeout catches a hang
    procs = launch(cache, tmp_path / how, timeout_s=5.0, fail=[how, 2 * 2 * 2])
    start = time.perf_counter()
    code = procs[0].wait(timeout=90)  # without the timeout this would wait for an hour
    waited = time.perf_counter() - start
    procs[1].kill()
    _, err = procs[0].communicate()
    assert code == 1, err
    assert "process 0 of 2 lost contact with the others" in err
    assert "Update 2 is saved in" in err and "--resume" in err
    assert load_checkpoint(tmp_path / how / "latest.pt")["step"] == 2
    assert waited < 60


def test_distributed_trainer_needs_a_process_group(cache, tmp_path):
    with pytest.raises(RuntimeError, match="start the processes with torchrun"):
        DistributedTrainer(config(cache, tmp_path))


def test_with_dropout_on_two_processes_resume_bit_exact_and_stay_identical(cache, tmp_path):
    """Dropout masks come from a generator reseeded per (update, process) in _start_update, so
    a 2-process run with dropout cannot match a 1-process run mask for mask (its masks are
    drawn elsewhere): the equality that holds, and that this checks, is exactness against
    itself: every process holds the same weights, and a stop + resume changes nothing."""
    def run(out, **args):
        settings = {**TINY, "dropout": 0.1, "cache_dir": str(cache), "output_dir": str(out)}
        results = finish(launch(cache, out, config=settings, **args))
        return {line.split()[1] for _, printed, _ in results for line in printed.splitlines()
                if line.startswith("weights ")}

    straight = run(tmp_path / "straight")
    run(tmp_path / "split", stop_after=3)                    # between the evaluations at 2 and 4
    resumed = run(tmp_path / "split", resume_from=str(tmp_path / "split" / "latest.pt"))
    assert len(straight) == 1, "the two processes hold different weights"
    assert resumed == straight
    assert history(tmp_path / "straight")["train_loss"] == history(tmp_path / "split")["train_loss"]
