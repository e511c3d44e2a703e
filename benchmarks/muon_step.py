"""One optimizer step of qwenlib.Muon vs torch.optim.Muon on the default model's Muon parameters.

Side by side in one process, alternating, after warm-up; prints the median time of each and
their ratio. torch.optim.Muon runs Newton-Schulz in bf16 always; qwenlib.Muon picks bf16 on
CUDA and fp32 elsewhere, which is the difference this measures on a CPU.
"""

import statistics

import torch

from _timing import timed
from qwenlib import MinimalLLM, Muon, PretrainingConfig, get_device


def main(repeats: int = 20) -> None:
    device = get_device()
    torch.manual_seed(0)
    model = MinimalLLM(PretrainingConfig()).to(device)
    names = [n for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("layers.")]
    make = lambda: [torch.nn.Parameter(model.get_parameter(n).detach().clone()) for n in names]  # noqa: E731
    ours, theirs = make(), make()
    for p, q in zip(ours, theirs):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    opt_ours = Muon(ours, lr=0.01, momentum=0.95)
    opt_torch = torch.optim.Muon(theirs, lr=0.01, momentum=0.95, nesterov=True, weight_decay=0.0,
                                 adjust_lr_fn="original")

    for _ in range(3):  # warm-up
        opt_ours.step()
        opt_torch.step()
    t_ours, t_torch = [], []
    for _ in range(repeats):
        t_ours.append(timed(opt_ours.step, device))
        t_torch.append(timed(opt_torch.step, device))
    a, b = statistics.median(t_ours), statistics.median(t_torch)
    n = sum(p.numel() for p in ours)
    print(f"device {device}, {len(ours)} matrices, {n:,} parameters, median of {repeats} steps")
    print(f"qwenlib.Muon       {a * 1000:8.1f} ms/step")
    print(f"torch.optim.Muon   {b * 1000:8.1f} ms/step")
    print(f"ratio torch / qwenlib = {b / a:.2f}x")


if __name__ == "__main__":
    main()
