"""training.data.pack_rows: every FIM example lies whole in one row, left-to-right text keeps its order."""

from __future__ import annotations

import random

from training.data import pack_rows


def _contains(row: list[int], ex: list[int]) -> bool:
    return any(row[i:i + len(ex)] == ex for i in range(len(row) - len(ex) + 1))


def test_fim_examples_are_never_cut_across_rows():
    rng = random.Random(0)
    examples, is_fim = [], []
    for n in range(200):
        fim = rng.random() < 0.5
        length = rng.randint(5, 60)
        # FIM examples are marked by a first token of 1 and distinct token values so they can be found
        examples.append(([1] if fim else []) + [1000 * (n + 1) + i for i in range(length)])
        is_fim.append(fim)
    rows = pack_rows(examples, is_fim, seq_len=64, pad=0)
    assert rows and all(len(r) == 64 for r in rows)
    for ex, fim in zip(examples, is_fim):
        if fim:
            assert sum(_contains(r, ex) for r in rows) == 1, ex[:3]
    l2r = [t for ex, fim in zip(examples, is_fim) if not fim for t in ex]
    placed = [t for r in rows for t in r if t not in (0, 1) and any(t in ex for ex, f in zip(examples, is_fim) if not f)]
    assert placed == l2r[:len(placed)] and len(placed) >= len(l2r) - 64  # in order, only the last partial row dropped
    # FIM and left-to-right text are spread over the epoch, not all FIM first
    first_half = rows[: len(rows) // 2]
    assert any(r[0] == 1 for r in rows[len(rows) // 2:]) and any(r[0] == 1 for r in first_half)


def test_an_example_longer_than_a_row_is_cut_to_it():
    rows = pack_rows([[1] + list(range(2, 200))], [True], seq_len=32, pad=0)
    assert rows == [[1] + list(range(2, 33))]
