"""Chapter 8: sampling, KV-cache decoding, streaming, the widget."""

import pytest
import torch

import qwenlib.generation as generation
from qwenlib import (GenerationWidget, MinimalLLM, PretrainingConfig, generate_batch,
                     generate_text, load_and_cache_data, stream_text)
from qwenlib.generation import filter_logits, generate_ids, next_token

WINDOW = 32
TINY = dict(vocab_size=8192, d_model=32, n_heads=2, n_kv_heads=1, d_ff=64, max_seq_len=WINDOW,
            max_tokens=3000, num_documents=20)


@pytest.fixture(scope="module")
def model_and_tokenizer(shared_cache):
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    config = PretrainingConfig(cache_dir=str(shared_cache), **TINY)
    tokenizer = load_and_cache_data(config, verbose=False)[1]
    torch.manual_seed(0)
    return MinimalLLM(config).eval(), tokenizer


@pytest.mark.parametrize("prompt_length", [1, 5, WINDOW - 1, WINDOW])
def test_greedy_with_kv_cache_equals_recomputing_past_the_window(model_and_tokenizer, prompt_length):
    model, _ = model_and_tokenizer
    ids = torch.randint(0, 8192, (2, prompt_length), generator=torch.Generator().manual_seed(prompt_length))
    new = 3 * WINDOW  # well past max_seq_len
    cached = torch.stack(list(generate_ids(model, ids, new, temperature=0)), 1)
    recomputed = torch.stack(list(generate_ids(model, ids, new, temperature=0, use_cache=False)), 1)
    assert cached.shape == (2, new)
    assert torch.equal(cached, recomputed)


def test_cached_steps_feed_one_token_until_the_window_is_full(model_and_tokenizer, monkeypatch):
    model, _ = model_and_tokenizer
    lengths = []
    real = MinimalLLM.hidden_states

    def spy(self, input_ids, *args, **kwargs):
        lengths.append(input_ids.shape[1])
        return real(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(MinimalLLM, "hidden_states", spy)
    list(generate_ids(model, torch.zeros(1, 4, dtype=torch.long), WINDOW + 2, temperature=0))
    # prefill 4, then single tokens up to 32 in context, then full windows past it
    assert lengths == [4] + [1] * (WINDOW - 4) + [WINDOW] * 5


def test_temperature_zero_is_the_argmax():
    logits = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 4.9]])
    assert next_token(logits, temperature=0).tolist() == [1, 0]


def test_filters_keep_the_top_k_and_the_top_p_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    kept = lambda f: (f > float("-inf")).int().tolist()[0]  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [1, 1, 0, 0, 0]
    assert kept(filter_logits(logits, top_p=0.5)) == [1, 0, 0, 0, 0]
    assert kept(filter_logits(logits, top_p=0.75)) == [1, 1, 0, 0, 0]
    assert kept(filter_logits(logits, top_p=0.85)) == [1, 1, 1, 0, 0]
    assert kept(filter_logits(logits, top_k=0, top_p=1.0)) == [1, 1, 1, 1, 1]
    scrambled = logits[:, [3, 0, 4, 1, 2]]  # the order of the vocabulary does not matter
    assert kept(filter_logits(scrambled, top_p=0.75)) == [0, 1, 0, 1, 0]
    g = torch.Generator().manual_seed(0)
    draws = {next_token(logits, 1.0, top_k=3, generator=g).item() for _ in range(300)}
    assert draws == {0, 1, 2}


def _nucleus_by_full_sort(logits, top_k, top_p):
    """The reference: top-k, then top-p over a sort of the whole vocabulary."""
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    logits = logits.masked_fill(logits < kth, float("-inf"))
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop_sorted = probs.cumsum(-1) - probs >= top_p
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))


@pytest.mark.parametrize("top_k, top_p", [(5, 0.5), (50, 0.9), (50, 0.999), (1, 0.3)])
def test_top_p_after_top_k_keeps_what_a_full_sort_keeps(top_k, top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3000, generator=g) * 3
    logits[1, :60] = 7.0                      # many ties at the top, more than k of them
    logits[2, torch.topk(logits[2], top_k).indices[-1]] = logits[2].max()  # a tie inside the top k
    got = filter_logits(logits, top_k=top_k, top_p=top_p)
    want = _nucleus_by_full_sort(logits, top_k, top_p)
    assert torch.equal(got > float("-inf"), want > float("-inf"))
    assert torch.equal(got[got > float("-inf")], want[want > float("-inf")])


def test_a_seed_makes_sampling_repeatable(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    a = generate_text(model, tokenizer, "The ", 20, temperature=1.0, seed=3)
    assert a == generate_text(model, tokenizer, "The ", 20, temperature=1.0, seed=3)
    assert a != generate_text(model, tokenizer, "The ", 20, temperature=1.0, seed=4)


def test_generation_stops_at_the_end_of_text_token(model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    eos, a = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("a")
    calls = iter([a, a, a, eos] + [a] * 100)
    monkeypatch.setattr(generation, "next_token", lambda *args, **kw: torch.tensor([next(calls)]))
    assert generate_text(model, tokenizer, "x", max_length=50) == "xaaa"


def test_stopping_at_the_end_of_text_token_can_be_turned_off(model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    eos, a = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("a")
    calls = iter([a, eos, a, a] + [a] * 100)
    monkeypatch.setattr(generation, "next_token", lambda *args, **kw: torch.tensor([next(calls)]))
    text = generate_text(model, tokenizer, "x", max_length=4, stop_at_eos=False)
    assert text.startswith("xa") and text.endswith("aa") and len(text) > len("xaaa")


def test_streaming_waits_for_whole_characters(model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    halves = tokenizer.convert_tokens_to_ids(["Ã", "©"])  # the two bytes of "é", byte-level
    assert tokenizer.decode(halves) == "é"
    calls = iter([halves[0], halves[1], tokenizer.convert_tokens_to_ids("a")])
    monkeypatch.setattr(generation, "next_token", lambda *args, **kw: torch.tensor([next(calls)]))
    assert list(stream_text(model, tokenizer, "x", max_length=3)) == ["é", "a"]


def test_a_batch_of_prompts_gives_what_each_prompt_gives_alone(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = ["The ", "def ", "Return the value", "class "]
    alone = [generate_text(model, tokenizer, p, 15, temperature=0) for p in prompts]
    assert generate_batch(model, tokenizer, prompts, 15, temperature=0) == alone


@pytest.mark.parametrize("kwargs, words", [
    (dict(prompt=""), "prompt is empty"),
    (dict(max_length=0), "max_length"),
    (dict(max_length=-3), "max_length"),
    (dict(top_p=0.0), "top_p must lie in"),
    (dict(top_p=1.5), "top_p must lie in"),
    (dict(top_k=-1), "top_k must be"),
    (dict(temperature=-0.1), "temperature must be a finite number >= 0"),
    (dict(temperature=float("inf")), "temperature must be a finite number"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(top_p=float("nan")), "top_p must lie in"),
    (dict(top_k=2.5), "top_k must be a whole number"),
    (dict(top_k=True), "top_k must be a whole number"),
    (dict(max_length=10**12), "max_length must be .* from 1 to 100,000"),
    (dict(max_length=5.0), "max_length"),
    (dict(seed=10**23), "seed must be a whole number"),
    (dict(seed=-1), "seed must be a whole number"),
    (dict(prompt="word " * 100), "keep its last 32 tokens"),
])
def test_bad_settings_get_a_clear_error(model_and_tokenizer, kwargs, words):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match=words):
        generate_text(model, tokenizer, **{"prompt": "The ", **kwargs})


def test_widget_generates_when_the_button_is_pressed(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    widget = GenerationWidget(model, tokenizer)
    widget.prompt.value = "def "
    widget.temperature.value = 0.0
    widget.max_new_tokens.value = 12
    widget.generate_button.click()
    text = widget.wait(timeout=60)
    assert text == generate_text(model, tokenizer, "def ", 12, temperature=0)
    assert "tokens/s" in widget.status.value
    assert "def " in widget.output.value
    assert not widget.generate_button.disabled and widget.stop_button.disabled


def test_widget_displays_as_a_widget_view_under_ipywidgets_7_and_8(model_and_tokenizer):
    """Colab's runtime ships ipywidgets 7.7.1 (`make test-floors` runs this under it), whose
    widgets have no `_repr_mimebundle_`; the pins have 8. Both must show the widget."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()  # display() publishes through a shell, as in a notebook
    widget = GenerationWidget(*model_and_tokenizer)
    with capture_output() as shown:
        display(widget)
    views = [o.data["application/vnd.jupyter.widget-view+json"] for o in shown.outputs
             if "application/vnd.jupyter.widget-view+json" in o.data]
    assert [view["model_id"] for view in views] == [widget.box.model_id]


def test_widget_stop_interrupts_generation(model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    a = tokenizer.convert_tokens_to_ids("a")
    monkeypatch.setattr(generation, "next_token", lambda *args, **kw: torch.tensor([a]))
    widget = GenerationWidget(model, tokenizer, prompt="x", max_new_tokens=1000)
    widget.generate()
    widget.stop_button.click()
    text = widget.wait(timeout=60)
    assert "(stopped)" in widget.status.value
    assert len(text) < 1 + 1000


@pytest.mark.parametrize("prompt, says", [(b"Hi", "is bytes"), ("", "is empty"), (None, "is empty"),
                                           ("caf\udce9", "half of a surrogate pair")])
def test_a_prompt_that_is_not_text_is_one_clear_error(model_and_tokenizer, prompt, says):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match=says):
        generate_text(model, tokenizer, prompt, 3)


def test_widget_shows_errors_instead_of_losing_them(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    widget = GenerationWidget(model, tokenizer, prompt="")
    widget.generate()
    widget.wait(timeout=60)
    assert widget.status.value.startswith("error: the prompt is empty")


@pytest.mark.parametrize("vocab, batch", [(4096, 1), (4096, 3), (3000, 1), (3001, 2)])
def test_last_logits_equal_the_plain_product_for_any_batch_and_vocabulary(vocab, batch):
    """The slab-wise product of a decode step: the same logits as hidden @ weight.T, also
    for a vocabulary that does not split into 8 slabs and for a non-contiguous weight."""
    from qwenlib.generation import last_logits

    torch.manual_seed(0)
    weight, hidden = torch.randn(vocab, 64) * 0.1, torch.randn(batch, 64)
    for w in (weight, torch.randn(64, vocab).T * 0.1):
        got = last_logits(hidden, w)
        want = hidden.double() @ w.double().T
        assert got.shape == (batch, vocab) and got.dtype == torch.float32
        assert (got.double() - want).abs().max() <= 1e-5 * want.abs().max()


def test_every_generation_entry_point_takes_its_settings_from_sampling():
    """One definition of the sampling settings: the functions, the widget and the shell's
    flags all default to Sampling's values, and a bad value is a ConfigError naming it."""
    import dataclasses
    import inspect

    from qwenlib.__main__ import build_parser
    from qwenlib.config import ConfigError
    from qwenlib.generation import Sampling, generate_batch, generate_ids, generate_text, stream_text
    from qwenlib.widgets import GenerationWidget

    defaults = dataclasses.asdict(Sampling())
    for fn, renamed in ((generate_text, {}), (stream_text, {}), (generate_batch, {}),
                        (generate_ids, {"max_length": "max_new_tokens"}),
                        (GenerationWidget.__init__, {"max_length": "max_new_tokens", "seed": None})):
        params = inspect.signature(fn).parameters
        for name, value in defaults.items():
            name = renamed.get(name, name)
            if name in params and params[name].default is not inspect.Parameter.empty:
                assert params[name].default == value, (fn.__qualname__, name)
    shell = vars(build_parser().parse_args(["generate", "--checkpoint", "x", "--prompt", "y"]))
    assert {k: shell[k] for k in ("max_length", "temperature", "top_k", "top_p", "seed")} == \
        {k: defaults[k] for k in ("max_length", "temperature", "top_k", "top_p", "seed")}
    for field, value in (("top_k", -1), ("top_p", 0.0), ("max_length", 0), ("stop_at_eos", "yes")):
        with pytest.raises(ConfigError) as caught:
            Sampling(**{field: value})
        assert (caught.value.field, caught.value.value) == (field, value)


def test_filter_logits_acts_on_the_last_axis_of_any_shape():
    """(vocab,), (B, vocab) and (B, T, vocab) logits: each row filtered on its own."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 50) * 3
    for settings in (dict(temperature=0.7, top_k=5), dict(top_p=0.8), dict(top_k=20, top_p=0.5)):
        rows = torch.stack([filter_logits(row, **settings) for row in logits.reshape(6, 50)])
        assert torch.equal(filter_logits(logits, **settings), rows.view(2, 3, 50))
        assert torch.equal(filter_logits(logits.reshape(6, 50), **settings), rows)
    assert torch.equal(filter_logits(logits), logits)                  # the defaults change nothing
    assert torch.allclose(filter_logits(logits, temperature=0.5), logits * 2)
    kept = torch.isfinite(filter_logits(logits, top_k=5)).sum(-1)
    assert (kept == 5).all()


def test_next_token_samples_the_filtered_softmax_with_the_generator_it_is_given():
    torch.manual_seed(0)
    logits = torch.randn(64, 30) * 2
    for settings in ({}, dict(temperature=0.5, top_p=0.6), dict(top_k=3)):
        want = torch.multinomial(torch.softmax(filter_logits(logits, **settings), -1), 1,
                                 generator=torch.Generator().manual_seed(7))[:, 0]
        got = next_token(logits, **settings, generator=torch.Generator().manual_seed(7))
        assert torch.equal(got, want), settings
    assert torch.equal(next_token(logits, temperature=0), logits.argmax(-1))


@pytest.mark.parametrize("setting, value", [
    ("temperature", -0.1), ("top_k", -1), ("top_k", 2.5), ("top_p", 0.0), ("top_p", 1.5),
    ("max_new_tokens", 0), ("seed", -1), ("seed", 2**64)])
def test_check_sampling_names_the_setting_that_is_wrong(setting, value):
    good = dict(temperature=0.8, top_k=50, top_p=0.9, max_new_tokens=100, seed=None)
    generation.check_sampling(**good)
    with pytest.raises(ValueError) as err:
        generation.check_sampling(**{**good, setting: value})
    field = "max_length" if setting == "max_new_tokens" else setting
    assert err.value.field == field and err.value.value == value and err.value.rule in str(err.value)


def test_the_edges_of_the_sampling_ranges_are_accepted_and_the_rules_read_well():
    from qwenlib.generation import MAX_NEW_TOKENS, Sampling

    for edge in (dict(top_k=0), dict(top_k=None), dict(top_p=1.0), dict(max_length=1),
                 dict(max_length=MAX_NEW_TOKENS), dict(seed=0), dict(seed=2**64 - 1),
                 dict(temperature=0)):
        Sampling(**edge)
    for bad, rule in ((dict(stop_at_eos=1), "must be True or False"),
                      (dict(top_k=-1), "must be a whole number >= 0 (0 or None: no limit)"),
                      (dict(seed=2**64), "must be a whole number from 0 to 2**64 - 1, or None")):
        with pytest.raises(ValueError) as err:
            Sampling(**bad)
        assert err.value.rule == rule


def test_a_prompt_the_tokenizer_cannot_take_is_one_line():
    from qwenlib.generation import _encode

    with pytest.raises(ValueError) as err:
        _encode(None, b"caf\xc3\xa9")
    assert str(err.value) == ("the prompt is bytes (b'caf\\xc3\\xa9'), not text: decode it first, "
                              "e.g. prompt.decode('utf-8')")
    with pytest.raises(ValueError) as err:
        _encode(None, "caf\udce9")
    assert str(err.value).endswith("from a shell, the --prompt bytes were not UTF-8")


class _ScriptedTokenizer:
    """Characters are token ids (a -> 1, b -> 2, ...); id 9 is the end of text."""
    eos_token_id = 9

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) - 96 for c in text]}

    def decode(self, ids):
        return "".join("<eos>" if i == 9 else chr(i + 96) for i in ids)


def test_rows_stop_at_their_end_of_text_and_the_text_ends_before_it(model_and_tokenizer, monkeypatch):
    """The sampler is scripted: row 0 writes e, then the end of text, then (finished) would go
    on; row 1 ends at once. Each row stops at its own end-of-text, the run when all have."""
    model, _ = model_and_tokenizer
    script = iter([torch.tensor([5, 9]), torch.tensor([9, 7]), torch.tensor([3, 3])])
    monkeypatch.setattr(generation, "next_token", lambda *args: next(script))
    steps = list(generate_ids(model, torch.tensor([[1, 2], [3, 4]]), 10, eos_token_id=9))
    assert [s.tolist() for s in steps] == [[5, 9], [9, 9]]          # finished rows repeat it
    script = iter([torch.tensor([5, 9]), torch.tensor([9, 7]), torch.tensor([9, 9])] * 3)
    out = generate_batch(model, _ScriptedTokenizer(), ["ab", "cd"], max_length=10)
    assert out == ["abe", "cd"]
    script = iter([torch.tensor([5]), torch.tensor([6]), torch.tensor([9]), torch.tensor([4])])
    assert "".join(generation.stream_text(model, _ScriptedTokenizer(), "ab", max_length=10)) == "ef"
    script = iter([torch.tensor([5]), torch.tensor([9]), torch.tensor([4])])
    assert "".join(generation.stream_text(model, _ScriptedTokenizer(), "ab", max_length=3,
                                          stop_at_eos=False)) == "e<eos>d"


class _SilentTokenTokenizer(_ScriptedTokenizer):
    """As _ScriptedTokenizer, and id 8 decodes to no text at all (as a special token can)."""

    def decode(self, ids):
        return super().decode([i for i in ids if i != 8])


def test_streaming_yields_no_empty_pieces_for_a_token_without_text(model_and_tokenizer, monkeypatch):
    """A token that adds no text gives no piece: a caller that prints or appends each piece
    (the widget, a chat loop) never gets an empty one."""
    model, _ = model_and_tokenizer
    script = iter([torch.tensor([5]), torch.tensor([8]), torch.tensor([6])])
    monkeypatch.setattr(generation, "next_token", lambda *args: next(script))
    assert list(generation.stream_text(model, _SilentTokenTokenizer(), "ab", max_length=3)) == ["e", "f"]


def test_top_k_and_the_seed_reach_every_step(model_and_tokenizer):
    model, _ = model_and_tokenizer
    ids = torch.randint(0, 8192, (2, 4), generator=torch.Generator().manual_seed(3))
    steps = lambda **s: torch.stack(list(generate_ids(model, ids, 6, **s)), 1)  # noqa: E731
    assert torch.equal(steps(temperature=1.0, top_k=1, top_p=1.0), steps(temperature=0))
    assert torch.equal(steps(temperature=1.0, top_k=0, top_p=1.0, seed=5),
                       steps(temperature=1.0, top_k=0, top_p=1.0, seed=5))
    with pytest.raises(ValueError, match=r"^input_ids must be \(batch, length\) with length >= 1, "
                                         r"got \(4,\)$"):
        next(generate_ids(model, ids[0], 2))


def test_generate_batch_passes_top_k_and_the_seed_on(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = ["def f(x):", "The list"]
    greedy = generate_batch(model, tokenizer, prompts, max_length=5, temperature=0)
    assert generate_batch(model, tokenizer, prompts, max_length=5, temperature=1.0, top_k=1,
                          top_p=1.0) == greedy
    seeded = [generate_batch(model, tokenizer, prompts, max_length=5, temperature=1.0, top_k=0,
                             top_p=1.0, seed=11) for _ in range(2)]
    assert seeded[0] == seeded[1]
