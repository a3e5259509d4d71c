"""training.data FIM transform: the line-aligned split cuts where an editor asks for a completion, and
the default draw (line_rate 0) is unchanged so earlier runs repeat."""

from __future__ import annotations

import random

from training.data import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, fim_transform, line_aligned_split

DOC = "import os\n\n\ndef f(x):\n    y = x + 1\n    if y:\n        return y\n\n    return 0\n\nprint(f(2))\n"


def test_line_aligned_middles_end_before_a_line_break_and_start_at_a_line_or_inside_one():
    rng = random.Random(0)
    kinds = set()
    for _ in range(500):
        a, b = line_aligned_split(DOC, rng)
        middle = DOC[a:b]
        assert b == len(DOC) or DOC[b] == "\n", repr(middle)  # the break starts the suffix
        assert not middle.endswith("\n") and (middle.strip() or a == b), repr(middle)  # empty only at a line end
        line_start = a == 0 or DOC[a - 1] == "\n"
        kinds.add("multi" if "\n" in middle else "line" if line_start else "rest")
        if "\n" in middle:
            assert line_start and middle.count("\n") <= 7 and middle.split("\n")[-1].strip()
        elif not line_start:  # the rest of a line, from a point after its indentation
            line = DOC[DOC.rfind("\n", 0, a) + 1:b]
            assert a - (DOC.rfind("\n", 0, a) + 1) >= len(line) - len(line.lstrip())
    assert kinds == {"multi", "line", "rest"}


def test_no_split_without_a_non_blank_line():
    assert line_aligned_split("\n\n   \n", random.Random(0)) is None


def test_fim_examples_rebuild_the_document():
    rng = random.Random(3)
    for _ in range(200):
        segs = fim_transform(DOC, rng, fim_rate=1.0, line_rate=0.5)
        if segs[1] == FIM_SUFFIX:  # SPM
            _, _, suffix, mid_tok, prefix, middle = segs
        else:  # PSM
            _, prefix, _, suffix, mid_tok, middle = segs
        assert segs[0] == FIM_PREFIX and mid_tok == FIM_MIDDLE
        assert prefix + middle + suffix == DOC


def test_line_rate_zero_draws_what_the_plain_starcoder_transform_drew():
    a, b = random.Random(7), random.Random(7)
    for _ in range(100):
        assert fim_transform(DOC, a) == fim_transform(DOC, b, line_rate=0.0)
    # the plain draw uses exactly these random numbers (so phase-1 runs repeat step for step)
    rng, ref = random.Random(11), random.Random(11)
    segs = fim_transform(DOC, rng, fim_rate=1.0)
    ref.random()
    x, y = sorted((ref.randint(0, len(DOC)), ref.randint(0, len(DOC))))
    spm = ref.random() < 0.5
    middle = DOC[x:y]
    assert segs[-1] == middle and (segs[1] == FIM_SUFFIX) == spm
