"""One process of a distributed test run (tests/test_distributed.py starts several).

argv[1] is JSON: {"config": {...PretrainingConfig fields}, "stop_after": int | null,
"resume_from": path | null, "timeout_s": float, "fail": null | ["die" | "hang", batch]}.
With "fail", process 1 exits hard (or stops answering) when it reads that many
training windows: the test of what the other processes then do.
"""

import hashlib
import json
import os
import sys
import time

from qwenlib import PretrainingConfig, load_and_cache_data, make_dataloaders
from qwenlib.data import TextTokenDataset
from qwenlib.distributed import DistributedTrainer, init_distributed

args = json.loads(sys.argv[1])
rank, world_size, device = init_distributed(args.get("timeout_s", 60.0))
config = PretrainingConfig(**args["config"])
_, _, tokens = load_and_cache_data(config, verbose=False)  # the test has built the cache
train_loader, val_loader = make_dataloaders(config, tokens)
if args.get("fail") and rank == 1:
    how, after = args["fail"]
    real, reads = TextTokenDataset.__getitem__, [0]

    def failing(self, i):
        if self is train_loader.dataset:
            reads[0] += 1
            if reads[0] > after:
                if how == "die":
                    os._exit(3)
                time.sleep(3600)
        return real(self, i)

    TextTokenDataset.__getitem__ = failing
trainer = DistributedTrainer(config, device, verbose=False)
try:
    model, _ = trainer.train(train_loader, val_loader, resume_from=args.get("resume_from"),
                             stop_after=args.get("stop_after"))
except RuntimeError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
# the exact bytes of this process's weights: every process must hold the same
print("weights", hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes()
                                         for p in model.parameters())).hexdigest())
