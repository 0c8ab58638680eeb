"""State timelines: parsing, validation errors, activity-derived labels, round trip."""

import pytest
import torch

from llia_core.errors import TimelineError
from llia_core.states import (IDLE, LISTENING, SPEAKING, fixed_states, format_timeline, parse_timeline,
                              states_from_activity)


def test_parse_timeline_per_frame():
    labels = parse_timeline("0-3.2:speaking,3.2-6:listening", 150, 25)
    assert labels.shape == (150,)
    assert (labels[:80] == SPEAKING).all() and (labels[80:] == LISTENING).all()


def test_end_keyword_and_order_independent():
    a = parse_timeline("2-end:idle, 0-2:speaking", 100, 25)
    assert (a[:50] == SPEAKING).all() and (a[50:] == IDLE).all()


@pytest.mark.parametrize("text,words", [
    ("0-3:speaking,2-6:idle", "overlap"),
    ("0-3:speaking,4-6:idle", "gap"),
    ("0-9:speaking", "runs to"),
    ("0-2:speaking", "extend"),
    ("1-6:speaking", "must start at 0"),
    ("0-6:singing", "unknown state"),
    ("zero to six: speaking", "cannot read"),
    ("", "empty"),
    ("3-1:idle", "ends before"),
])
def test_bad_timelines_name_the_problem(text, words):
    with pytest.raises(TimelineError, match=words):
        parse_timeline(text, 150, 25)


def test_states_from_activity():
    own = torch.tensor([1, 1, 0, 0, 0, 1], dtype=torch.bool)
    other = torch.tensor([0, 1, 1, 1, 0, 0], dtype=torch.bool)
    assert states_from_activity(own).tolist() == [0, 0, 2, 2, 2, 0]
    assert states_from_activity(own, other).tolist() == [0, 0, 1, 1, 2, 0]


def test_format_round_trip():
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 25)
    text = format_timeline(labels, 25)
    assert torch.equal(parse_timeline(text, 75, 25), labels)
    assert fixed_states(4, "listening").tolist() == [1, 1, 1, 1]
