"""Every exercise check accepts a right answer and rejects plausible wrong ones."""

import sys

import pytest

from conftest import ROOT
from qwenlib import exercises
from solutions import appendix_a, b1, b2, b3, b4, b5, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch09b, ch09c, ch10

EXERCISES = [
    (ch01, "check_num_windows", "num_windows"), (ch01, "check_make_pair", "make_pair"),
    (ch01, "check_honest_split", "split"),
    (ch02, "check_fold_gain", "fold"), (ch02, "check_layer_norm_via_rms", "layer_norm_via_rms"),
    (ch02, "check_rms_norm", "rms_norm"),
    (ch03, "check_interleaved_to_rotate_half", "convert"), (ch03, "check_ones_score", "ones_score"),
    (ch03, "check_apply_rope", "apply_rope"),
    (ch04, "check_zero_query_output", "zero_query_output"), (ch04, "check_tokens_that_fit", "tokens_that_fit"),
    (ch04, "check_causal_attention", "causal_attention"),
    (ch05, "check_swiglu", "swiglu"), (ch05, "check_decoder_block", "decoder_block"),
    (ch05, "check_count_parameters", "count_parameters"),
    (ch06, "check_singular_values_after_ns", "predict"), (ch06, "check_muon_split", "goes_to_muon"),
    (ch06, "check_newton_schulz", "newton_schulz"), (ch06, "check_normalize_neurons", "normalize_neurons"),
    (ch07, "check_warmup_linear", "schedule"), (ch07, "check_accumulation", "train_step"),
    (ch07, "check_update", "update"),
    (ch08, "check_top_k_keep", "top_k_keep"), (ch08, "check_greedy_decode", "greedy_decode"),
    (ch08, "check_top_p_filter", "top_p_filter"),
    (ch09, "check_early_stop", "early_stop"),
    (ch09, "check_same_bits_loss", "same_bits_loss"),
    (ch09b, "check_best_is_inside", "best_is_inside"), (ch09b, "check_crossing_update", "crossing"),
    (ch09c, "check_verdict", "verdict"), (ch09c, "check_parallel_block", "parallel_block"),
    (ch10, "check_unshard", "unshard"), (ch10, "check_per_process_batch", "per_process_batch"),
    (appendix_a, "check_chunked_loss", "chunked_loss"),
    (appendix_a, "check_chunked_backward", "chunked_backward"),
    (b1, "check_gguf_data_bytes", "gguf_data_bytes"), (b1, "check_gguf_header", "read_header"),
    (b2, "check_checksum", "checksum_of"), (b2, "check_resume_index", "resume_index"),
    (b3, "check_hf_name", "hf_name"), (b3, "check_safetensors_header", "read_header"),
    (b4, "check_ids_problem", "ids_problem"), (b4, "check_cache_digest", "cache_digest"),
    (b5, "check_finite_number", "finite_number"), (b5, "check_heads_problem", "heads_problem"),
]
IDS = [check for _, check, _ in EXERCISES]


@pytest.mark.parametrize("chapter, check, answer", EXERCISES, ids=IDS)
def test_check_accepts_the_right_answer(chapter, check, answer, capsys):
    assert getattr(exercises, check)(getattr(chapter, answer)) is True
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("chapter, check, answer", EXERCISES, ids=IDS)
def test_check_accepts_right_answers_written_another_way(chapter, check, answer, capsys):
    alternatives = chapter.ALTERNATIVE[answer]
    assert alternatives, f"{chapter.__name__} has no other right answer for {answer}"
    for right in alternatives:
        assert getattr(exercises, check)(right) is True, capsys.readouterr().out
        assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("chapter, check, answer", EXERCISES, ids=IDS)
def test_check_rejects_wrong_answers_with_a_hint(chapter, check, answer, capsys):
    for wrong in chapter.WRONG[answer] + [lambda *args: None]:
        assert getattr(exercises, check)(wrong) is False
        assert capsys.readouterr().out.startswith("✗")


def test_every_exported_check_is_tested():
    assert sorted(exercises.__all__) == sorted(IDS + ["check_your_model"])


def test_a_crashing_answer_is_reported_not_raised(capsys):
    def crashes(*args):
        raise ZeroDivisionError("oops")

    assert exercises.check_num_windows(crashes) is False
    assert "raised ZeroDivisionError: oops" in capsys.readouterr().out


def test_every_chapter_has_at_least_two_checked_exercises():
    chapters = sorted((ROOT / "notebooks").glob("*.ipynb"))
    per_chapter = {}
    for chapter, check, _ in EXERCISES:
        per_chapter.setdefault(chapter.__name__.split(".")[-1], []).append(check)
    for notebook in chapters:
        number = notebook.stem.split("_")[0]          # "01", "09b", "A1"
        key = ("appendix_a" if number == "A1" else number.lower() if number.startswith("B")
               else f"ch{number}")
        assert len(per_chapter.get(key, [])) >= 2, f"{notebook.name} has {per_chapter.get(key)}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache):
    """A checkpoint of a short real run (30 updates on the built-in corpus) and its tokenizer."""
    from qwenlib import PretrainingConfig, PretrainingTrainer, load_and_cache_data, make_dataloaders

    folder = tmp_path_factory.mktemp("trained")
    # the data settings of test_generation.py's TINY: one tokenized corpus for both modules
    config = PretrainingConfig(vocab_size=8192, max_tokens=3000, num_documents=20, d_model=64,
                               n_heads=4, n_kv_heads=2, d_ff=128, n_layers=2, max_seq_len=64,
                               batch_size=8, gradient_accumulation_steps=1, max_steps=30,
                               eval_every=30, eval_steps=2, cache_dir=str(shared_cache),
                               output_dir=str(folder), rope_theta=5e4)
    _, tokenizer, tokens = load_and_cache_data(config, verbose=False)
    PretrainingTrainer(config, device="cpu", verbose=False).train(*make_dataloaders(config, tokens))
    return folder / "best_model1.pt", tokenizer


def test_the_readers_four_pieces_together_write_a_trained_checkpoints_greedy_text(trained, capsys):
    checkpoint, tokenizer = trained
    pieces = (ch02.rms_norm, ch03.apply_rope, ch04.causal_attention, ch05.swiglu)
    assert exercises.check_your_model(*pieces, checkpoint, tokenizer) is True
    assert capsys.readouterr().out.startswith("✓")
    other_style = (ch02.ALTERNATIVE["rms_norm"][0], ch03.ALTERNATIVE["apply_rope"][0],
                   ch04.ALTERNATIVE["causal_attention"][0], ch05.ALTERNATIVE["swiglu"][0])
    assert exercises.check_your_model(*other_style, checkpoint, tokenizer) is True
    capsys.readouterr()
    # one classic slip per piece that changes fp32 numbers (no upcast only shows in fp16)
    slips = [ch02._no_gain, ch02._layer_norm, ch03._interleaved_rope, ch03._wrong_sign,
             ch04._no_mask, ch04._heads_round_robin, ch05.WRONG["swiglu"][0], ch05.WRONG["swiglu"][2]]
    for slip in slips:
        i = [ch02, ch03, ch04, ch05].index(sys.modules[slip.__module__])
        name = ("rms_norm", "apply_rope", "causal_attention", "swiglu")[i]
        with_one_wrong = pieces[:i] + (slip,) + pieces[i + 1:]
        assert exercises.check_your_model(*with_one_wrong, checkpoint, tokenizer) is False
        assert f"your {name} in the model" in capsys.readouterr().out
