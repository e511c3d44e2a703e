"""Every exercise check accepts a right answer and rejects plausible wrong ones."""

import pytest

from conftest import ROOT
from qwenlib import exercises
from solutions import appendix_a, b1, b2, b3, b4, b5, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch09b, ch10

EXERCISES = [
    (ch01, "check_num_windows", "num_windows"), (ch01, "check_make_pair", "make_pair"),
    (ch01, "check_honest_split", "split"),
    (ch02, "check_fold_gain", "fold"), (ch02, "check_layer_norm_via_rms", "layer_norm_via_rms"),
    (ch02, "check_rms_norm", "rms_norm"),
    (ch03, "check_interleaved_to_rotate_half", "convert"), (ch03, "check_rope_angle", "angle"),
    (ch03, "check_apply_rope", "apply_rope"),
    (ch04, "check_kv_cache_bytes", "kv_cache_bytes"), (ch04, "check_tokens_that_fit", "tokens_that_fit"),
    (ch04, "check_causal_attention", "causal_attention"),
    (ch05, "check_swiglu", "swiglu"), (ch05, "check_decoder_block", "decoder_block"),
    (ch05, "check_count_parameters", "count_parameters"),
    (ch06, "check_singular_values_after_ns", "predict"), (ch06, "check_muon_split", "goes_to_muon"),
    (ch06, "check_newton_schulz", "newton_schulz"),
    (ch07, "check_warmup_linear", "schedule"), (ch07, "check_accumulation", "train_step"),
    (ch07, "check_update", "update"),
    (ch08, "check_top_k_keep", "top_k_keep"), (ch08, "check_greedy_decode", "greedy_decode"),
    (ch08, "check_top_p_filter", "top_p_filter"),
    (ch09, "check_early_stop", "early_stop"),
    (ch09, "check_bits_per_character", "bits_per_character"),
    (ch09b, "check_best_is_inside", "best_is_inside"), (ch09b, "check_crossing_update", "crossing"),
    (ch10, "check_unshard", "unshard"), (ch10, "check_per_process_batch", "per_process_batch"),
    (appendix_a, "check_ce_logit_gradient", "ce_grad"),
    (appendix_a, "check_chunked_loss", "chunked_loss"),
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
    assert sorted(exercises.__all__) == sorted(IDS)


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
