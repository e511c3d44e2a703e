"""Every exercise check accepts a right answer and rejects plausible wrong ones."""

import pytest

from qwenlib import exercises
from solutions import ch01

CHAPTER_1 = [("check_num_windows", "num_windows"), ("check_make_pair", "make_pair"),
             ("check_honest_split", "split")]


@pytest.mark.parametrize("check, answer", CHAPTER_1)
def test_check_accepts_the_right_answer(check, answer, capsys):
    assert getattr(exercises, check)(getattr(ch01, answer)) is True
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("check, answer", CHAPTER_1)
def test_check_rejects_wrong_answers_with_a_hint(check, answer, capsys):
    for wrong in ch01.WRONG[answer]:
        assert getattr(exercises, check)(wrong) is False
        assert capsys.readouterr().out.startswith("✗")


def test_a_crashing_answer_is_reported_not_raised(capsys):
    def crashes(*args):
        raise ZeroDivisionError("oops")

    assert exercises.check_num_windows(crashes) is False
    assert "raised ZeroDivisionError: oops" in capsys.readouterr().out
