"""The static memory planner: no two live tensors share a byte, and the arena is close to the
largest set of tensors alive at once."""

import itertools

import numpy as np
import pytest

from tfedge.microcontroller import planner
from tfedge.microcontroller.planner import Buffer


def test_lower_bound_by_hand():
    buffers = [Buffer("a", 100, 0, 1), Buffer("b", 50, 1, 2), Buffer("c", 70, 2, 3)]
    assert planner.lower_bound(buffers) == 150  # a and b at op 1; b and c (120) at op 2


def test_a_chain_reuses_memory_and_meets_the_bound():
    # in -> op0 -> t0 -> op1 -> t1 -> op2 -> out: only two tensors are ever alive at once, the
    # most at op0 (in and t0: 192 bytes); t1 and out reuse the input's bytes.
    buffers = [Buffer("in", 64, -1, 0), Buffer("t0", 128, 0, 1), Buffer("t1", 32, 1, 2),
               Buffer("out", 16, 2, 3)]
    p = planner.plan(buffers)
    planner.check(p, buffers)
    assert p.lower_bound == 192 and p.arena_bytes == 192


def test_a_residual_keeps_its_skip_alive():
    buffers = [Buffer("x", 40, -1, 2), Buffer("y", 80, 0, 1), Buffer("z", 40, 1, 2),
               Buffer("sum", 40, 2, 3)]
    p = planner.plan(buffers)
    planner.check(p, buffers)
    assert p.lower_bound == 160 and p.arena_bytes == 160


def test_offsets_are_aligned_and_sizes_padded():
    buffers = [Buffer("a", 3, 0, 1), Buffer("b", 5, 0, 1)]
    p = planner.plan(buffers, alignment=4)
    planner.check(p, buffers, alignment=4)
    assert sorted(p.offsets.values()) == [0, 8] or sorted(p.offsets.values()) == [0, 4]
    assert p.arena_bytes in (12, 9 + 3)


@pytest.mark.parametrize("seed", range(20))
def test_random_lifetimes_never_collide(seed):
    rng = np.random.default_rng(seed)
    buffers = []
    for i in range(40):
        first = int(rng.integers(-1, 30))
        buffers.append(Buffer(f"b{i}", int(rng.integers(1, 5000)), first,
                              first + int(rng.integers(0, 8))))
    p = planner.plan(buffers)
    planner.check(p, buffers)
    assert p.lower_bound <= p.arena_bytes <= 2 * p.lower_bound


def test_check_catches_a_collision():
    buffers = [Buffer("a", 16, 0, 1), Buffer("b", 16, 1, 2)]
    bad = planner.Plan(offsets={"a": 0, "b": 8}, arena_bytes=32, lower_bound=32, order="x")
    with pytest.raises(AssertionError, match="alive together and overlap"):
        planner.check(bad, buffers)


def test_bad_arguments():
    with pytest.raises(ValueError, match="power of two"):
        planner.plan([], alignment=3)
    with pytest.raises(ValueError, match="unique"):
        planner.plan([Buffer("a", 1, 0, 0), Buffer("a", 1, 0, 0)])
    with pytest.raises(ValueError, match="first <= last"):
        planner.plan([Buffer("a", 1, 2, 0)])


@pytest.mark.integration
def test_reshape_aliases_and_zoo_model_plans_are_within_5_percent(int8_tflite):
    from tfedge.converters import read_tflite

    model = read_tflite(int8_tflite)
    mb = planner.model_buffers(model)
    p = planner.plan(mb.buffers)
    planner.check(p, mb.buffers)
    assert p.arena_bytes <= 1.05 * p.lower_bound
    main = model.subgraphs[0]
    # Every activation tensor of every op has a home in the arena.
    for op in main.operators:
        for t in itertools.chain(op.inputs, op.outputs):
            if t >= 0 and model.buffers[main.tensors[t].buffer].size == 0:
                assert t in mb.tensor_buffer
