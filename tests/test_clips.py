"""The clip planner: short first clip, growth, restart at switches, exact coverage."""

import pytest
import torch

from llia_core.clips import clip_noise_seed, plan_clips


def test_first_clip_short_then_growing_to_max():
    clips = plan_clips(100, first_clip=2, max_clip=16)
    assert [c.length for c in clips[:5]] == [2, 4, 8, 16, 16]
    assert sum(c.length for c in clips) == 100


@pytest.mark.parametrize("n", [1, 2, 3, 17, 99, 1000])
def test_clips_cover_every_frame_once(n):
    states = torch.randint(0, 3, (n,)).repeat_interleave(1)
    clips = plan_clips(n, states, first_clip=1, max_clip=8)
    covered = torch.zeros(n, dtype=torch.int)
    for c in clips:
        covered[c.start:c.stop] += 1
        assert 1 <= c.length <= 8
        assert (states[c.start:c.stop] == c.state).all(), "a clip must not span a state switch"
    assert (covered == 1).all()
    assert [c.index for c in clips] == list(range(len(clips)))


def test_restart_short_after_switch():
    states = torch.tensor([0] * 40 + [1] * 40)
    clips = plan_clips(80, states, first_clip=2, max_clip=16)
    after = [c for c in clips if c.start == 40][0]
    assert after.length == 2 and after.state == 1
    no_restart = plan_clips(80, states, first_clip=2, max_clip=16, restart_on_switch=False)
    assert [c for c in no_restart if c.start == 40][0].length == 16


def test_bad_plans_raise():
    with pytest.raises(ValueError):
        plan_clips(0)
    with pytest.raises(ValueError):
        plan_clips(10, first_clip=20, max_clip=16)
    with pytest.raises(ValueError):
        plan_clips(10, torch.zeros(9))


def test_noise_seed_depends_on_place_not_history():
    a = plan_clips(50, first_clip=2, max_clip=16)
    b = plan_clips(50, first_clip=2, max_clip=16)
    assert [clip_noise_seed(7, c) for c in a] == [clip_noise_seed(7, c) for c in b]
    assert len({clip_noise_seed(7, c) for c in a}) == len(a)
    assert clip_noise_seed(7, a[0]) != clip_noise_seed(8, a[0])


def test_clips_can_run_across_switches_and_name_their_first_frames_state():
    states = torch.tensor([0] * 21 + [2] * 59)
    clips = plan_clips(80, states, first_clip=2, max_clip=16, cut_at_switches=False)
    assert [c.length for c in clips] == [2, 4, 8, 16, 16, 16, 16, 2]
    assert sum(c.length for c in clips) == 80
    across = [c for c in clips if c.start < 21 < c.stop]
    assert len(across) == 1 and across[0].state == 0
    assert all(c.state == int(states[c.start]) for c in clips)
