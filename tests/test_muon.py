"""Chapter 6: Muon matches torch.optim.Muon; the Muon/AdamW split."""

import copy

import pytest
import torch

from qwenlib import MinimalLLM, Muon, PretrainingConfig, setup_muon_optimizer
from qwenlib.muon import (NS_COEFFICIENTS, POLAR_EXPRESS, normalize_neurons, per_step,
                          zeropower_via_newtonschulz5)

SHAPES = [(96, 32), (32, 96), (64, 64), (512, 128), (128, 512)]  # tall, wide, square, model-sized

# torch.optim.Muon always runs Newton-Schulz in bf16 (8-bit mantissa: relative rounding
# 2**-8 = 0.39% per operation, through 5 iterations of 3 matmuls). qwenlib runs it in fp32
# on the CPU, or in bf16 when asked, with its products in a different order. So the two
# agree to bf16 precision, not bitwise: measured, the final weights differ by at most 0.8%
# (fp32 vs bf16) and 1.9% (bf16 vs bf16) of the distance they moved in 10 steps.
# Tolerance: 3% of that distance, in Frobenius norm, per parameter.
TOLERANCE = 0.03


def run_both(weight_decay, ns_dtype, nesterov=True, steps=10, seed=0, adjust_lr_fn="original",
             ours_adjust_lr_fn=None):
    """`ours_adjust_lr_fn`: qwenlib's setting when it should differ from torch's (a control)."""
    torch.manual_seed(seed)
    ours = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in SHAPES]
    start = [p.detach().clone() for p in ours]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours = Muon(ours, lr=0.02, momentum=0.95, nesterov=nesterov, ns_steps=5,
                    weight_decay=weight_decay, ns_dtype=ns_dtype,
                    adjust_lr_fn=ours_adjust_lr_fn or adjust_lr_fn)
    opt_torch = torch.optim.Muon(theirs, lr=0.02, weight_decay=weight_decay, momentum=0.95,
                                 nesterov=True, ns_coefficients=(3.4445, -4.7750, 2.0315),
                                 eps=1e-7, ns_steps=5, adjust_lr_fn=adjust_lr_fn)
    for _ in range(steps):
        for p, q in zip(ours, theirs):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        grads = [p.grad.clone() for p in ours]
        opt_ours.step()
        opt_torch.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(ours, grads)), "p.grad was modified"
    return [((p - q).norm() / (q - p0).norm()).item() for p, q, p0 in zip(ours, theirs, start)]


@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw"])
@pytest.mark.parametrize("ns_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_muon_matches_torch_optim_muon_to_bf16_precision(weight_decay, ns_dtype, adjust_lr_fn):
    gaps = run_both(weight_decay, ns_dtype, adjust_lr_fn=adjust_lr_fn)
    assert max(gaps) < TOLERANCE, f"relative gaps {gaps}"


def test_the_comparison_can_fail():
    # A wrong setting (no Nesterov look-ahead) lands far outside the tolerance.
    assert max(run_both(0.0, "float32", nesterov=False)) > 5 * TOLERANCE
    # So does the other step scale: for the square matrix 0.2 * sqrt(64) = 1.6 against 1
    assert max(run_both(0.1, "float32", adjust_lr_fn="match_rms_adamw",
                        ours_adjust_lr_fn="original")) > 5 * TOLERANCE


@pytest.mark.parametrize("shape", [(128, 512), (512, 128), (64, 256)])
def test_newton_schulz_puts_a_random_matrix_in_the_quintics_band(shape):
    # The quintic (3.4445, -4.7750, 2.0315) maps (0, 1] into about [0.68, 1.20] after
    # 5 steps, for every value not too close to 0 (its slope at 0 is 3.4445**5 = 485).
    torch.manual_seed(0)
    s = torch.linalg.svdvals(zeropower_via_newtonschulz5(torch.randn(shape), dtype=torch.float32))
    assert 0.65 <= s.min() and s.max() <= 1.25, (s.min(), s.max())


def test_newton_schulz_band_holds_for_singular_values_spread_over_two_decades():
    torch.manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(64, 64))
    V, _ = torch.linalg.qr(torch.randn(64, 64))
    G = U @ torch.diag(torch.logspace(0, -2, 64)) @ V.T
    out = zeropower_via_newtonschulz5(G, dtype=torch.float32)
    s = torch.linalg.svdvals(out)
    assert 0.65 <= s.min() and s.max() <= 1.25, (s.min(), s.max())
    assert torch.allclose(out @ out.T, torch.eye(64), atol=0.6)  # near-orthogonal, not exact


def test_non_matrix_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match="'norm.weight' of shape \\(4,\\).*Give .*to AdamW"):
        Muon([("norm.weight", torch.nn.Parameter(torch.ones(4)))])
    with pytest.raises(ValueError, match="parameter #0 of shape \\(2, 3, 4\\)"):
        Muon([torch.nn.Parameter(torch.ones(2, 3, 4))])


def test_split_gives_block_matrices_to_muon_and_the_rest_to_adamw():
    config = PretrainingConfig()
    model = MinimalLLM(config)
    muon, adamw = setup_muon_optimizer(model, config)
    muon_names = set(muon.param_groups[0]["param_names"])
    assert len(muon_names) == 7 * config.n_layers
    assert all(n.startswith("layers.") and n.endswith("proj.weight") for n in muon_names)
    assert muon.param_groups[0]["lr"] == config.muon_lr
    embed, gains = adamw.param_groups
    assert embed["param_names"] == ["embed_tokens.weight"]
    assert embed["weight_decay"] == config.weight_decay and gains["weight_decay"] == 0.0
    assert all(g["lr"] == pytest.approx(config.muon_lr * 0.1) for g in adamw.param_groups)
    assert all(n.endswith("norm.weight") for n in gains["param_names"])
    counted = sum(p.numel() for o in (muon, adamw) for g in o.param_groups for p in g["params"])
    assert counted == model.num_parameters() == 7_029_824
    assert sum(p.numel() for p in muon.param_groups[0]["params"]) == 737_280


def test_muons_updates_of_the_block_matrices_learn_what_only_the_blocks_can():
    """Predicting the previous token needs attention, i.e. the block matrices, which Muon
    trains; the embedding (and so the tied output layer) is frozen, and AdamW gets only the
    norm gains, which cannot move a token one position. Fresh random batches each update, so
    the loss falls only by learning the rule (measured: 4.22 -> 3.50 in 60 updates; with
    Muon.step a no-op it stays at 4.2). Freezing the embedding also checks that the optimizer
    set-up leaves an empty group out (torch refused the mix of named and empty groups)."""
    torch.manual_seed(0)
    config = PretrainingConfig(vocab_size=64, max_seq_len=32, n_layers=1, dropout=0.0)
    model = MinimalLLM(config)
    model.embed_tokens.weight.requires_grad_(False)
    optimizers = setup_muon_optimizer(model, config)
    assert [len(g["params"]) for g in optimizers[1].param_groups] == [5]   # the 5 norm gains only
    batches = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(60):
        x = torch.randint(0, 64, (8, 32), generator=batches)
        targets = x.roll(1, dims=1)
        targets[:, 0] = -100                      # the first token has no previous one
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), targets.flatten())
        loss.backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] - 0.4


def _singular_values_through(coefficients, s):
    """The odd polynomials of `coefficients` applied to the numbers `s`, step by step."""
    for a, b, c in per_step(coefficients, 5):
        s = a * s + b * s**3 + c * s**5
    return s


@pytest.mark.parametrize("coefficients", [NS_COEFFICIENTS, POLAR_EXPRESS], ids=["jordan", "polar"])
def test_newton_schulz_applies_each_steps_polynomial_to_every_singular_value(coefficients):
    """p(U S V^T) = U p(S) V^T: the matrix iteration must give exactly what the polynomials
    of each step, in order, give to the singular values one by one (float64, so that only
    the order of the triples or a wrong triple can make a difference)."""
    torch.manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(48, 48, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(80, 48, dtype=torch.float64))
    s = torch.logspace(0, -3, 48, dtype=torch.float64)
    G = U @ torch.diag(s) @ V.T
    out = zeropower_via_newtonschulz5(G, dtype=torch.float64, coefficients=coefficients)
    want = _singular_values_through(coefficients, s / s.norm())  # divided by the Frobenius norm
    assert torch.allclose(torch.linalg.svdvals(out), want.sort(descending=True).values, atol=1e-9)


def test_polar_express_lands_in_a_tighter_band_than_the_quintic():
    """Amsel et al.'s claim in numbers: after 5 steps every singular value from 1e-3 to 1 lands
    in [0.859, 1.141] under Polar Express, in [0.471, 1.202] under the fixed quintic."""
    s = torch.logspace(-3, 0, 2001, dtype=torch.float64)
    polar, quintic = (_singular_values_through(c, s) for c in (POLAR_EXPRESS, NS_COEFFICIENTS))
    assert 0.85 < polar.min() and polar.max() < 1.15
    assert quintic.min() < 0.5 and quintic.max() > 1.2
    # and on a real matrix, in bf16 as a GPU runs it: a rank-one matrix, whose largest
    # singular value is its Frobenius norm (the worst case for overshooting 1), stays finite
    G = torch.outer(torch.randn(64), torch.randn(256))
    out = zeropower_via_newtonschulz5(G, dtype=torch.bfloat16, coefficients=POLAR_EXPRESS)
    assert 0.8 < torch.linalg.svdvals(out.float())[0] < 1.2


def test_per_step_repeats_one_triple_and_the_last_of_a_list():
    assert per_step(NS_COEFFICIENTS, 3) == [NS_COEFFICIENTS] * 3
    assert per_step(POLAR_EXPRESS[:2], 4) == [POLAR_EXPRESS[0]] + [POLAR_EXPRESS[1]] * 3


def test_normuon_gives_every_neuron_the_same_step_and_keeps_the_updates_size():
    """At the first step the second moment is (1 - beta2) times each row's mean square, so every
    row (an output neuron) leaves with the same norm; the whole update keeps its Frobenius norm.
    At the second step the running mean remembers the first step's rows (the paper's formula)."""
    torch.manual_seed(0)
    first = torch.randn(32, 64) * torch.logspace(-1, 1, 32)[:, None]   # rows 100x apart
    state = {}
    out = normalize_neurons(first, state, beta2=0.9)
    rows = out.norm(dim=1)
    assert torch.allclose(rows, rows.mean().expand(32), rtol=1e-5)
    assert torch.allclose(out.norm(), first.norm(), rtol=1e-5)
    second = torch.randn(32, 64)
    out = normalize_neurons(second, state, beta2=0.9)
    v = 0.9 * 0.1 * first.square().mean(1, keepdim=True) + 0.1 * second.square().mean(1, keepdim=True)
    want = second / (v.sqrt() + 1e-8)
    assert torch.allclose(out, want * second.norm() / want.norm(), rtol=1e-5)


def test_cautious_weight_decay_shrinks_only_where_the_update_agrees_with_the_weight():
    """With lr=0.1 and weight_decay=1 an entry is decayed by 10% or not at all. The decay of
    the other entries is checked against a run without decay (the same update)."""
    torch.manual_seed(0)
    start = torch.randn(16, 16)
    grad = torch.randn(16, 16)
    runs = {}
    for name, wd, cautious in (("cautious", 1.0, True), ("plain", 1.0, False), ("none", 0.0, False)):
        p = torch.nn.Parameter(start.clone())
        p.grad = grad.clone()
        Muon([p], lr=0.1, weight_decay=wd, cautious_weight_decay=cautious, ns_dtype="float32").step()
        runs[name] = p.detach()
    update = (start - runs["none"]) / 0.1                     # what was subtracted, per unit lr
    agree = update * start >= 0
    assert 0.3 < agree.float().mean() < 0.7
    decayed = runs["none"] - 0.1 * start                      # the decay, then the same update
    assert torch.allclose(runs["cautious"][agree], decayed[agree], atol=1e-6)
    assert torch.allclose(runs["cautious"][~agree], runs["none"][~agree], atol=1e-6)
    assert torch.allclose(runs["plain"], decayed, atol=1e-6)


def test_an_optimizer_state_saved_before_the_2025_options_loads_with_them_off():
    torch.manual_seed(0)
    p, q = (torch.nn.Parameter(torch.randn(8, 4)) for _ in range(2))
    q.data.copy_(p)
    old, new = Muon([p], weight_decay=0.1), Muon([q], weight_decay=0.1)
    for opt, param in ((old, p), (new, q)):
        param.grad = torch.ones(8, 4)
        opt.step()
    saved = copy.deepcopy(old.state_dict())               # not old's own momentum buffer
    for key in ("adjust_lr_fn", "ns_coefficients", "normuon", "normuon_beta2",
                "cautious_weight_decay"):
        del saved["param_groups"][0][key]                     # as a checkpoint of 2025 has it
    new.load_state_dict(saved)
    for opt, param in ((old, p), (new, q)):
        param.grad = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
        opt.step()
    assert torch.equal(p, q)


def test_moonlights_rule_gives_muon_adamws_rate_and_decay():
    config = PretrainingConfig(muon_adjust_lr="match_rms_adamw", adamw_lr=3e-3, weight_decay=0.05,
                               muon_ns_coefficients="polar_express", normuon=True,
                               cautious_weight_decay=True)
    muon, adamw = setup_muon_optimizer(MinimalLLM(config), config)
    (group,) = muon.param_groups
    assert (group["lr"], group["weight_decay"], group["adjust_lr_fn"]) == (3e-3, 0.05, "match_rms_adamw")
    assert group["ns_coefficients"] == POLAR_EXPRESS and group["normuon"] and group["cautious_weight_decay"]
    assert [g["lr"] for g in adamw.param_groups] == [3e-3, 3e-3]
    original = PretrainingConfig(muon_weight_decay=0.1)
    muon, adamw = setup_muon_optimizer(MinimalLLM(original), original)
    assert (muon.param_groups[0]["lr"], muon.param_groups[0]["weight_decay"]) == (0.01, 0.1)
    assert muon.param_groups[0]["ns_coefficients"] == NS_COEFFICIENTS
    assert [g["lr"] for g in adamw.param_groups] == pytest.approx([0.001, 0.001])


@pytest.mark.parametrize("setting, words", [
    (dict(lr=0.0), "lr=0.0 must be positive"),
    (dict(momentum=1.0), "momentum=1.0 must satisfy 0 <= momentum < 1"),
    (dict(momentum=-0.1), "momentum=-0.1 must satisfy 0 <= momentum < 1"),
    (dict(weight_decay=-0.1), "weight_decay=-0.1 must be >= 0"),
    (dict(ns_steps=0), "ns_steps=0 must be at least 1"),
    (dict(ns_dtype="int8"), "ns_dtype='int8' must be None, \"float32\", \"bfloat16\" or \"float16\""),
    (dict(adjust_lr_fn="moonlight"), "adjust_lr_fn='moonlight' must be None or \"original\" "
     "(Keller Jordan's scale) or \"match_rms_adamw\" (Moonlight's)"),
    (dict(ns_coefficients=(3.4, -4.7)), "ns_coefficients=(3.4, -4.7) must be one (a, b, c) of "
     "finite numbers or a list of them, one per step"),
    (dict(ns_coefficients=(3.4, -4.7, float("nan"))), "ns_coefficients=(3.4, -4.7, nan) must"),
    (dict(ns_coefficients=[(3.4, -4.7, 2.0), (1.0, 2.0)]), "ns_coefficients=[(3.4, -4.7, 2.0), (1.0, 2.0)] must"),
    (dict(ns_coefficients=[]), "ns_coefficients=[] must"),
    (dict(normuon_beta2=1.0), "normuon_beta2=1.0 must satisfy 0 <= beta2 < 1"),
    (dict(normuon_beta2=-0.5), "normuon_beta2=-0.5 must satisfy 0 <= beta2 < 1"),
])
def test_a_setting_muon_cannot_use_is_refused_in_one_line_naming_it(setting, words):
    with pytest.raises(ValueError) as err:
        Muon([torch.nn.Parameter(torch.ones(4, 4))], **setting)
    assert str(err.value) == words or str(err.value).startswith(words + " "), str(err.value)


def test_the_edges_of_muons_ranges_are_accepted():
    for setting in (dict(momentum=0.0), dict(weight_decay=0.0), dict(ns_steps=1),
                    dict(ns_dtype="float16"), dict(normuon_beta2=0.0), dict(adjust_lr_fn=None),
                    dict(ns_coefficients=[(3.4445, -4.7750, 2.0315)]), dict(lr=1e-9)):
        Muon([torch.nn.Parameter(torch.ones(4, 4))], **setting)


def test_the_message_for_a_vector_says_what_to_do():
    with pytest.raises(ValueError) as err:
        Muon([("norm.weight", torch.nn.Parameter(torch.ones(4)))])
    assert str(err.value) == ("Muon got parameter 'norm.weight' of shape (4,): Muon only "
                              "orthogonalises 2-D weight matrices. Give embeddings, norm gains "
                              "and biases to AdamW instead (qwenlib.setup_muon_optimizer does "
                              "this split).")


def test_muons_defaults_are_keller_jordans_without_decay():
    """Muon(params) with no settings takes torch.optim.Muon's steps at lr 0.02, momentum 0.95,
    Nesterov, 5 steps and no weight decay (torch's own default decay is 0.1)."""
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in SHAPES]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    opt_ours = Muon(ours)
    opt_torch = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=True,
                                 ns_steps=5)
    for _ in range(5):
        for p, q in zip(ours, theirs):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt_ours.step()
        opt_torch.step()
    gaps = [((p - q).norm() / (q - p0).norm()).item() for p, q, p0 in zip(ours, theirs, start)]
    assert max(gaps) < TOLERANCE, gaps


def test_ns_dtype_sets_the_precision_of_the_iteration(monkeypatch):
    import qwenlib.muon as muon

    G = torch.randn(16, 48)
    assert zeropower_via_newtonschulz5(G, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert muon.default_ns_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setattr(muon, "has_native_bf16", lambda device: True)   # an A100, say
    assert muon.default_ns_dtype(torch.device("cpu")) == torch.bfloat16
    steps = {}
    for dtype in ("float32", "bfloat16"):
        p = torch.nn.Parameter(torch.zeros(16, 48))
        p.grad = G.clone()
        Muon([p], ns_dtype=dtype).step()
        steps[dtype] = p.detach()
    gap = (steps["float32"] - steps["bfloat16"]).norm() / steps["float32"].norm()
    assert 1e-4 < gap < 0.05   # bf16 rounding, not another algorithm


def test_newton_schulz_ignores_the_gradients_scale_and_works_on_the_short_side():
    from qwenlib.exercises.ch06 import _Products

    torch.manual_seed(0)
    G = torch.randn(96, 32)
    assert torch.allclose(zeropower_via_newtonschulz5(G * 1e-3, dtype=torch.float32),
                          zeropower_via_newtonschulz5(G, dtype=torch.float32), atol=1e-5)
    with _Products() as products:
        zeropower_via_newtonschulz5(G, dtype=torch.float32)
    assert max(max(shape) for shape in products.shapes) == 96
    assert all(shape[-2:] != (96, 96) for shape in products.shapes), products.shapes
    with pytest.raises(ValueError, match=r"needs a matrix, got a tensor of shape \(2, 3, 4\)"):
        zeropower_via_newtonschulz5(torch.ones(2, 3, 4))


def test_normuon_leaves_a_vanishing_neuron_small_and_its_sign_alone():
    """eps keeps a row whose update is ~0 from being divided by ~0 (or by a negative number)."""
    torch.manual_seed(0)
    u = torch.randn(8, 16)
    u[0] *= 1e-12
    out = normalize_neurons(u, {}, beta2=0.95)
    assert torch.all(torch.sign(out[0]) == torch.sign(u[0]))
    assert out[0].norm() < 0.01 * out[1:].norm(dim=1).min()


def test_adamw_alone_gets_every_parameter_and_decays_only_matrices():
    from qwenlib import setup_optimizers

    config = PretrainingConfig(optimizer="adamw", adamw_lr=3e-3, weight_decay=0.05, n_layers=1)
    model = MinimalLLM(config)
    (adamw,) = setup_optimizers(model, config)
    assert isinstance(adamw, torch.optim.AdamW)
    matrices, gains = adamw.param_groups
    assert (matrices["lr"], matrices["weight_decay"], gains["weight_decay"]) == (3e-3, 0.05, 0.0)
    assert all(p.ndim == 2 for p in matrices["params"]) and all(p.ndim == 1 for p in gains["params"])
    assert len(matrices["params"]) + len(gains["params"]) == len(list(model.parameters()))
    model.embed_tokens.weight.requires_grad_(False)                  # frozen: left out
    (adamw,) = setup_optimizers(model, config)
    assert sum(len(g["params"]) for g in adamw.param_groups) == len(list(model.parameters())) - 1


def test_normuons_state_lives_on_the_updates_device():
    """The meta device stands in for a GPU: a state made on the CPU would not mix with it."""
    state = {}
    out = normalize_neurons(torch.empty(8, 16, device="meta"), state, beta2=0.95)
    assert out.device.type == "meta" and state["neuron_second_moment"].device.type == "meta"
