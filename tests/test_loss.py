"""Appendix A: the fused, chunked LM-head loss gives the plain loss and its gradients."""

import pytest
import torch
import torch.nn.functional as F

from qwenlib import MinimalLLM, PretrainingConfig, linear_cross_entropy

SMALL = dict(vocab_size=3000, d_model=64, n_heads=4, n_kv_heads=2, d_ff=176, max_seq_len=64,
             builtin_vocab_size=3000)


def loss_and_grads(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    (loss * 1.7).backward()  # a grad_output other than 1 reaches the stored gradients
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same(got, want):
    (loss, grads), (ref_loss, ref_grads) = got, want
    assert abs(loss - ref_loss) <= 1e-6 * abs(ref_loss)
    assert grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():
        gap = (grads[name] - g).abs().max().item()
        assert gap <= 1e-5 * max(1.0, g.abs().max().item()), f"{name}: gradient off by {gap:.2e}"


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    config = PretrainingConfig(**SMALL)
    model = MinimalLLM(config)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # the same forward for both losses
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, config.vocab_size, (3, 50), generator=g)  # 150 positions
    y = torch.randint(0, config.vocab_size, (3, 50), generator=g)
    return model, x, y


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100, 149, 150, 151, 4096])
def test_model_loss_equals_plain_cross_entropy_with_every_gradient(setup, chunk_size):
    model, x, y = setup
    want = loss_and_grads(model, lambda: F.cross_entropy(model(x).flatten(0, 1), y.flatten()))
    got = loss_and_grads(model, lambda: model.loss(x, y, chunk_size=chunk_size))
    assert_same(got, want)


def test_default_size_model_loss_equals_plain_cross_entropy():
    torch.manual_seed(0)
    config = PretrainingConfig(dropout=0.0)
    model = MinimalLLM(config)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (2, config.max_seq_len), generator=g)
    y = torch.roll(x, -1, 1)
    want = loss_and_grads(model, lambda: F.cross_entropy(model(x).flatten(0, 1), y.flatten()))
    assert_same(loss_and_grads(model, lambda: model.loss(x, y)), want)  # 512 positions, 2 chunks
    assert_same(loss_and_grads(model, lambda: model.loss(x, y, chunk_size=300)), want)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_size", [5, 32, 1000])
def test_ignored_positions_and_sum_reduction_match_cross_entropy(reduction, chunk_size):
    g = torch.Generator().manual_seed(0)
    hidden0, weight0 = torch.randn(90, 16, generator=g), torch.randn(500, 16, generator=g)
    targets = torch.randint(0, 500, (90,), generator=g)
    targets[::4] = -100
    results = []
    for fn in (lambda h, w: F.cross_entropy(h @ w.T, targets, reduction=reduction),
               lambda h, w: linear_cross_entropy(h, w, targets, chunk_size, reduction=reduction)):
        h, w = hidden0.clone().requires_grad_(), weight0.clone().requires_grad_()
        loss = fn(h, w)
        loss.backward()
        results.append((loss.detach(), h.grad, w.grad))
    (want, want_h, want_w), (got, got_h, got_w) = results
    assert abs(got - want) <= 1e-6 * abs(want)
    assert torch.allclose(got_h, want_h, rtol=0, atol=1e-5 * want_h.abs().max())
    assert torch.allclose(got_w, want_w, rtol=0, atol=1e-5 * want_w.abs().max())
    assert (got_h[::4] == 0).all()  # ignored positions get no gradient


def test_no_grad_path_gives_the_same_loss_without_gradients(setup):
    model, x, y = setup
    with torch.no_grad():
        plain = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        fused = model.loss(x, y, chunk_size=64)
    assert not fused.requires_grad
    assert abs(fused - plain) <= 1e-6 * plain


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loss_and_gradients_under_autocast_are_close_and_keep_their_dtypes(dtype):
    """What CUDA's bf16 or fp16 autocast does, on the CPU: low-precision matmuls, fp32 softmax."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(64, 32, generator=g, requires_grad=True)
    weight = torch.randn(700, 32, generator=g, requires_grad=True)
    targets = torch.randint(0, 700, (64,), generator=g)
    targets[::5] = -100
    plain = F.cross_entropy(hidden @ weight.T, targets)
    want = torch.autograd.grad(plain, (hidden, weight))
    with torch.autocast("cpu", dtype=dtype):
        fused = linear_cross_entropy(hidden, weight, targets, chunk_size=20)
    got = torch.autograd.grad(fused, (hidden, weight))
    assert fused.dtype == torch.float32
    assert abs(fused - plain) < 0.02 * plain  # low-precision matmuls: close, not equal
    for a, b in zip(got, want):
        assert a.dtype == torch.float32
        assert (a - b).abs().max() <= 0.03 * b.abs().max()


def test_fp16_gradients_stay_finite_when_the_softmax_sum_passes_65504():
    """Uniform logits over 70,000 entries: the softmax's row sum is 70,000, past fp16's
    largest number, so the block must be divided before it is cast to fp16."""
    hidden = torch.full((8, 16), 0.5, requires_grad=True)
    weight = torch.zeros(70_000, 16, requires_grad=True)
    targets = torch.arange(8)
    want = torch.autograd.grad(F.cross_entropy(hidden @ weight.T, targets), (hidden, weight))
    with torch.autocast("cpu", dtype=torch.float16):
        got = torch.autograd.grad(linear_cross_entropy(hidden, weight, targets), (hidden, weight))
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert (a - b).abs().max() <= 0.01 * b.abs().max()


def test_peak_memory_holds_one_chunk_not_all_the_logits(setup, monkeypatch):
    """The largest tensors the fused loss creates are one (vocab, chunk) buffer and the
    weight's gradient; the logits would be (positions, vocab)."""
    from torch.overrides import TorchFunctionMode

    import qwenlib.loss
    # the buffer kept between calls is as large as the largest chunk used so far: start afresh
    monkeypatch.setattr(qwenlib.loss, "_block_buffer", qwenlib.loss._BlockBuffer())
    model, x, y = setup
    hidden = model.hidden_states(x)[0].detach().requires_grad_()
    weight = model.lm_head.weight
    sizes = []

    class Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.untyped_storage().data_ptr() not in (
                    weight.untyped_storage().data_ptr(), hidden.untyped_storage().data_ptr()):
                sizes.append(out.untyped_storage().nbytes() // out.element_size())
            return out

    with Spy():
        linear_cross_entropy(hidden, weight, y, chunk_size=16).backward()
    vocab, positions = weight.shape[0], x.numel()
    assert max(sizes) == max(vocab * 16, weight.numel())
    assert max(sizes) < positions * vocab


def test_the_logits_buffer_is_kept_between_calls_on_the_cpu_and_every_call_stays_exact(setup, monkeypatch):
    """A fresh 50 MB block per call would pay the operating system's page faults each time; so
    the block is kept, and reused by later calls of the same or a smaller chunk size; a larger
    one gets a larger block. What a call leaves in it must not reach the next: each call's loss
    and gradients equal plain cross-entropy's (other inputs, other targets each time)."""
    import qwenlib.loss

    monkeypatch.setattr(qwenlib.loss, "_block_buffer", qwenlib.loss._BlockBuffer())
    model, x, y = setup
    weight = model.lm_head.weight.detach()
    kept = None
    for call, chunk_size in enumerate((32, 32, 8, 64)):
        torch.manual_seed(call)
        hidden = (model.hidden_states(x)[0].detach() * (1 + call)).requires_grad_()
        targets = y.roll(call, dims=1)
        got = linear_cross_entropy(hidden, weight, targets, chunk_size=chunk_size)
        got_grad, = torch.autograd.grad(got, hidden)
        if call == 0:
            kept = qwenlib.loss._block_buffer.tensor.data_ptr()
        elif call == 2:
            assert qwenlib.loss._block_buffer.tensor.data_ptr() == kept
        want = F.cross_entropy((hidden @ weight.T).flatten(0, 1), targets.flatten())
        want_grad, = torch.autograd.grad(want, hidden)
        assert abs(got.item() - want.item()) <= 1e-5 * abs(want.item()), f"call {call}"
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-6)


def test_two_losses_before_one_backward_keep_their_own_gradients():
    """The second call reuses the first one's buffer: nothing the first returned may live in it."""
    torch.manual_seed(0)
    weight = (torch.randn(700, 32) * 0.3).requires_grad_()
    h1, h2 = (torch.randn(90, 32, requires_grad=True) for _ in range(2))
    t1, t2 = (torch.randint(0, 700, (90,)) for _ in range(2))
    fused = linear_cross_entropy(h1, weight, t1, chunk_size=40) \
        + 2 * linear_cross_entropy(h2, weight, t2, chunk_size=40)
    got = torch.autograd.grad(fused, (h1, h2, weight))
    plain = F.cross_entropy(h1 @ weight.T, t1) + 2 * F.cross_entropy(h2 @ weight.T, t2)
    want = torch.autograd.grad(plain, (h1, h2, weight))
    assert abs(fused.item() - plain.item()) <= 1e-6 * abs(plain.item())
    for a, b in zip(got, want):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_threads_computing_the_loss_at_once_get_their_own_results():
    """The kept buffer is per thread (nn.DataParallel and data loaders run threads)."""
    import threading

    torch.manual_seed(0)
    weight = torch.randn(2000, 64) * 0.3
    inputs = [(torch.randn(300, 64), torch.randint(0, 2000, (300,))) for _ in range(2)]
    want = [F.cross_entropy(h @ weight.T, t).item() for h, t in inputs]
    got = [[], []]

    def work(i):
        for _ in range(20):
            got[i].append(linear_cross_entropy(*inputs[i][:1], weight, inputs[i][1], chunk_size=100).item())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(2):
        assert max(abs(g - want[i]) for g in got[i]) <= 1e-5 * abs(want[i])


def test_a_second_backward_through_one_loss_is_refused_not_scaled_twice():
    """Backward scales the stored gradients in place, so it may run once per loss."""
    torch.manual_seed(0)
    weight = torch.randn(300, 16, requires_grad=True)
    hidden = torch.randn(20, 16, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.randint(0, 300, (20,)))
    (3 * loss).backward(retain_graph=True)
    first = weight.grad.clone()
    with pytest.raises(RuntimeError) as err:
        loss.backward()
    assert str(err.value) == ("linear_cross_entropy: a second backward through the same loss; its "
                              "stored gradients were already scaled in place. Compute the loss "
                              "again for each backward instead of retain_graph=True")
    assert torch.equal(weight.grad, first)


@pytest.mark.parametrize("call, error, words", [
    (lambda h, w, t: linear_cross_entropy(h.view(2, 5, 16), w[:, :8], t.view(2, 5)), ValueError,
     r"^hidden has 16 features but the head weight \(500, 8\) expects 8$"),
    (lambda h, w, t: linear_cross_entropy(h.view(2, 5, 16), w, t[:-1]), ValueError,
     r"^one target per position: hidden \(2, 5, 16\) needs 10 targets, got \(9,\)$"),
    (lambda h, w, t: linear_cross_entropy(h, w, t.float()), TypeError, "integer token ids"),
    (lambda h, w, t: linear_cross_entropy(h, w, t, chunk_size=0), ValueError, "chunk_size"),
    (lambda h, w, t: linear_cross_entropy(h, w, t, reduction="none"), ValueError, "reduction"),
    (lambda h, w, t: linear_cross_entropy(h, w, t + 500), ValueError, r"targets must lie in \[0, 500\)"),
    (lambda h, w, t: linear_cross_entropy(h, w, t.clamp(max=499).index_fill(0, torch.tensor([3]), 500)),
     ValueError, r"^targets must lie in \[0, 500\) \(or be ignore_index=-100\), got min \d+, max 500$"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(10, 16, generator=g), torch.randn(500, 16, generator=g)
    t = torch.randint(0, 500, (10,), generator=g)
    with pytest.raises(error, match=words):
        call(h, w, t)


def test_model_loss_refuses_targets_of_another_shape(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="targets must be a tensor shaped like input_ids"):
        model.loss(x, y[:, :-1])


def test_the_evaluation_sums_are_the_sum_loss_and_the_argmax_hits_of_full_logits():
    """Evaluation reads loss and accuracy from the fused pass: the summed loss must equal
    linear_cross_entropy(reduction="sum") and F.cross_entropy's, and the hits the argmax's,
    with ignored positions and a chunk size that does not divide the tokens."""
    from qwenlib.loss import linear_cross_entropy, linear_cross_entropy_sums
    g = torch.Generator().manual_seed(3)
    hidden, weight = torch.randn(2, 37, 16, generator=g), torch.randn(50, 16, generator=g)
    hidden[0, :5] = 3 * weight[0]  # ignored positions whose argmax is token 0 (must not count)
    logits = hidden @ weight.t()
    targets = torch.where(torch.rand(2, 37, generator=g) < 0.5, logits.argmax(-1),
                          torch.randint(0, 50, (2, 37), generator=g))
    targets[0, :5] = -100
    loss, hits = linear_cross_entropy_sums(hidden, weight, targets, chunk_size=8)
    want = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert loss.item() == pytest.approx(linear_cross_entropy(hidden, weight, targets, chunk_size=8,
                                                             reduction="sum").item(), rel=1e-7)
    kept = targets != -100
    assert hits.item() == ((logits.argmax(-1) == targets) & kept).sum().item() > 20


def test_tokens_whose_logits_lie_hundreds_apart_each_get_their_own_logsumexp():
    """Each token's largest logit is subtracted before exp, not the chunk's: one shift for all
    would underflow the token whose logits are all far below another's (here -113 vs 335)."""
    hidden = torch.zeros(4, 8)
    hidden[0], hidden[1] = 30.0, -30.0
    hidden.requires_grad_()                                  # the training pass, and
    weight = torch.randn(50, 8, generator=torch.Generator().manual_seed(1)).abs()
    targets = torch.tensor([1, 2, 3, 4])
    plain = F.cross_entropy(hidden @ weight.T, targets, reduction="none")
    for t in list(range(4)) * 2:
        if hidden.requires_grad and t == 3:
            hidden = hidden.detach()                         # the evaluation pass
        fused = linear_cross_entropy(hidden, weight, targets.where(torch.arange(4) == t, -100),
                                     chunk_size=4, reduction="sum")
        assert torch.isfinite(fused) and abs(fused - plain[t]) <= 1e-4 * plain[t].abs().clamp(min=1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_the_head_multiplies_in_the_autocast_dtype(dtype):
    seen = []

    class Products(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.mm, torch.matmul, torch.Tensor.mm):
                seen.append((args[0].dtype, args[1].dtype))
            return func(*args, **(kwargs or {}))

    hidden, weight = torch.randn(8, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype), Products():
        linear_cross_entropy(hidden, weight, torch.randint(0, 50, (8,)), chunk_size=4).backward()
    assert seen and all(pair == (dtype, dtype) for pair in seen), seen


def test_every_buffer_of_the_loss_lives_on_the_inputs_device(monkeypatch):
    """The meta device stands in for a GPU (shapes only, no values): a buffer made on the CPU
    would not mix with it. Autocast has no meta mode, so it is switched off for the test."""
    import contextlib

    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *args: False)
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: contextlib.nullcontext())
    from qwenlib.loss import linear_cross_entropy_sums

    hidden = torch.empty(2, 5, 8, device="meta", requires_grad=True)
    weight = torch.empty(30, 8, device="meta", requires_grad=True)
    targets = torch.empty(2, 5, dtype=torch.long, device="meta")
    for reduction in ("mean", "sum"):
        loss = linear_cross_entropy(hidden, weight, targets, chunk_size=4, reduction=reduction)
        loss.backward()
        assert loss.device.type == hidden.grad.device.type == weight.grad.device.type == "meta"
    with torch.no_grad():
        assert linear_cross_entropy(hidden, weight, targets, chunk_size=4).device.type == "meta"
    sums = linear_cross_entropy_sums(hidden.detach(), weight.detach(), targets, chunk_size=4)
    assert all(s.device.type == "meta" for s in sums)
