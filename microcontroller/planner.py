"""Static memory planning for ahead-of-time compiled models: one arena, an offset per tensor.

    buffers = planner.model_buffers(read_tflite(tflite_bytes))
    plan = planner.plan(buffers)
    plan.arena_bytes, plan.lower_bound, plan.offsets["conv1_out"]

Every activation tensor (a tensor without constant data) lives from the op that writes it to the
last op that reads it; model inputs from before the first op, model outputs to after the last.
Two tensors may share bytes when their lifetimes do not overlap. No arena can be smaller than
the largest total of tensors alive at one moment (`lower_bound`), and the planner is measured
against it.

The placement is greedy: tensors are placed one at a time at the lowest offset where they
overlap no placed tensor that is alive at the same time (TFLM's GreedyMemoryPlanner does the
same, largest first). Several orders are tried (largest first, longest-lived first, earliest
first, and by size times lifetime) and the smallest arena wins; on the zoo's models the result
is at the lower bound or within a few percent of it.

RESHAPE outputs alias their input (a reshape moves no byte), which a runtime that copies them
(TFLM) pays for in arena and time.
"""

import dataclasses

import numpy as np

ALIGNMENT = 4  # word alignment: kernels read int8 pairs/quads with 32-bit loads


@dataclasses.dataclass(frozen=True)
class Buffer:
    """A block of arena bytes alive from op `first` to op `last` (inclusive)."""

    name: str
    size: int
    first: int
    last: int

    def overlaps_in_time(self, other):
        return self.first <= other.last and other.first <= self.last


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where each buffer lies: `offsets[name]`, and the arena that holds them all."""

    offsets: dict
    arena_bytes: int
    lower_bound: int
    order: str  # the placement order that won

    @property
    def ratio(self):
        """arena_bytes / lower_bound (1.0 is optimal)."""
        return self.arena_bytes / self.lower_bound if self.lower_bound else 1.0


def _align(value, alignment):
    return (value + alignment - 1) // alignment * alignment


def lower_bound(buffers):
    """The largest total size of buffers alive at the same op: no arena can be smaller."""
    if not buffers:
        return 0
    events = sorted({b.first for b in buffers} | {b.last for b in buffers})
    return max(sum(b.size for b in buffers if b.first <= t <= b.last) for t in events)


def _place(buffers, alignment):
    placed = []  # (offset, end, buffer)
    offsets = {}
    for buffer in buffers:
        size = _align(buffer.size, alignment)
        busy = sorted((o, e) for o, e, b in placed if b.overlaps_in_time(buffer))
        offset = 0
        for start, end in busy:
            if offset + size <= start:
                break
            offset = max(offset, end)
        offsets[buffer.name] = offset
        placed.append((offset, offset + size, buffer))
    arena = max((e for _, e, _ in placed), default=0)
    return offsets, arena


ORDERS = {
    "largest first": lambda b: (-b.size, b.first, b.name),
    "longest-lived first": lambda b: (-(b.last - b.first), -b.size, b.name),
    "earliest first": lambda b: (b.first, -b.size, b.name),
    "size x lifetime": lambda b: (-b.size * (b.last - b.first + 1), b.name),
}


def _two_sided(buffers, alignment, cap, choose):
    """Places buffers in time order, each at the bottom or the top of a free gap below `cap`
    (`choose(buffer, candidates)` picks), above everything when nothing below `cap` fits.

    Placing a tensor at the top of the arena while its neighbours in time sit at the bottom
    (ping-pong) is what a chain of large tensors needs, and what lowest-offset placement
    cannot do."""
    order = sorted(buffers, key=lambda b: (b.first, -b.size, b.name))
    placed = []
    offsets = {}
    for buffer in order:
        size = _align(buffer.size, alignment)
        busy = sorted((o, e) for o, e, b in placed if b.overlaps_in_time(buffer))
        gaps, cursor = [], 0
        for start, end in busy:
            if start > cursor:
                gaps.append((cursor, start))
            cursor = max(cursor, end)
        gaps.append((cursor, None))
        candidates = []
        for start, end in gaps:
            top = cap if end is None else min(end, cap)
            if top - start >= size:
                candidates.append(start)
                if top - size != start:
                    candidates.append(top - size - (top - size) % alignment)
        offset = choose(buffer, sorted(set(candidates))) if candidates else cursor
        offsets[buffer.name] = offset
        placed.append((offset, offset + size, buffer))
    return offsets, max((e for _, e, _ in placed), default=0)


def plan(buffers, alignment=ALIGNMENT, *, trials=64):
    """The smallest arena found; ties go to the first strategy.

    Strategies: the greedy placement over `ORDERS`, then time-ordered two-sided placement
    under a cap at the lower bound, first ping-pong (tensors alternate between the bottom and
    the top), then `trials` seeded random choices of bottom or top. Stops as soon as an
    arena meets the lower bound. Deterministic."""
    if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"`alignment` must be a power of two. Received: alignment={alignment!r}")
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise ValueError("buffer names must be unique")
    for b in buffers:
        if b.size < 0 or b.first > b.last:
            raise ValueError(f"buffer {b.name!r} has size {b.size} and lifetime {b.first}.."
                             f"{b.last}; sizes must be >= 0 and first <= last")
    bound = lower_bound(buffers)
    best = None
    for name, key in ORDERS.items():
        offsets, arena = _place(sorted(buffers, key=key), alignment)
        if best is None or arena < best[1]:
            best = (offsets, arena, name)
    cap = _align(bound, alignment)
    if best[1] > cap:
        parity = {}

        def ping_pong(buffer, candidates):
            # Alternate ends along the chain of time: the k-th buffer to start goes to the
            # bottom for even k, the top for odd k.
            k = parity.setdefault(buffer.name, len(parity))
            return candidates[0] if k % 2 == 0 else candidates[-1]

        offsets, arena = _two_sided(buffers, alignment, cap, ping_pong)
        if arena < best[1]:
            best = (offsets, arena, "ping-pong")
        rng = np.random.default_rng(0)
        for trial in range(trials):
            if best[1] <= cap:
                break
            offsets, arena = _two_sided(
                buffers, alignment, cap,
                lambda b, c: c[0] if len(c) == 1 or rng.random() < 0.5 else c[-1])
            if arena < best[1]:
                best = (offsets, arena, f"two-sided, random {trial}")
    offsets, arena, name = best
    return Plan(offsets=offsets, arena_bytes=arena, lower_bound=bound, order=name)


def check(plan_, buffers, alignment=ALIGNMENT):
    """Raises AssertionError if two buffers alive at the same time share a byte, or a buffer
    leaves the arena or is misaligned. Cheap insurance that the generated code is right."""
    spans = [(plan_.offsets[b.name], plan_.offsets[b.name] + b.size, b) for b in buffers]
    for start, end, b in spans:
        assert start % alignment == 0, f"{b.name} at {start} is not {alignment}-byte aligned"
        assert end <= plan_.arena_bytes, f"{b.name} ends at {end}, past the arena"
    for i, (s1, e1, b1) in enumerate(spans):
        for s2, e2, b2 in spans[i + 1:]:
            if b1.overlaps_in_time(b2) and s1 < e2 and s2 < e1 and b1.size and b2.size:
                raise AssertionError(f"{b1.name} [{s1}, {e1}) and {b2.name} [{s2}, {e2}) are "
                                     "alive together and overlap")


# ---------------------------------------------------------------------------------------------
# From a .tflite model.

ALIASING_OPS = frozenset({"RESHAPE"})


@dataclasses.dataclass(frozen=True)
class ModelBuffers:
    """The arena buffers of subgraph 0: `buffers`, and for every activation tensor index the
    buffer name that holds it (aliases share one)."""

    buffers: tuple
    tensor_buffer: dict  # tensor index -> buffer name
    num_ops: int


def model_buffers(model, scratch=None):
    """Arena buffers of a parsed `.tflite` (`tfedge.converters.read_tflite`).

    `scratch`: {op index: bytes} of scratch memory kernels need during one op (a buffer alive
    at that op only).
    """
    main = model.subgraphs[0]
    n = len(main.operators)

    def is_activation(index):
        tensor = main.tensors[index]
        return model.buffers[tensor.buffer].size == 0

    root = {}  # tensor -> the tensor whose buffer it shares

    def find(t):
        while root.get(t, t) != t:
            t = root[t]
        return t

    for op in main.operators:
        if op.name in ALIASING_OPS and op.inputs and op.outputs and \
                is_activation(op.inputs[0]) and op.inputs[0] not in main.outputs:
            root[op.outputs[0]] = find(op.inputs[0])
    first, last, size = {}, {}, {}

    def touch(t, step):
        r = find(t)
        first[r] = min(first.get(r, step), step)
        last[r] = max(last.get(r, step), step)
        nbytes = main.tensors[t].nbytes
        if nbytes is None:
            raise ValueError(f"tensor {main.tensors[t].name!r} has no fixed size "
                             f"(shape {main.tensors[t].shape}, {main.tensors[t].type_name}); "
                             "ahead-of-time compilation needs static shapes")
        size[r] = max(size.get(r, 0), nbytes)

    for t in main.inputs:
        touch(t, -1)
    for step, op in enumerate(main.operators):
        for t in list(op.inputs) + list(op.outputs):
            if t >= 0 and is_activation(t):
                touch(t, step)
    for t in main.outputs:
        touch(t, n)
    names = {r: f"t{r}" for r in first}
    buffers = [Buffer(names[r], size[r], first[r], last[r]) for r in sorted(first)]
    for step, nbytes in sorted((scratch or {}).items()):
        if nbytes:
            buffers.append(Buffer(f"scratch{step}", int(nbytes), step, step))
    tensor_buffer = {t: names[find(t)] for t in range(len(main.tensors)) if find(t) in names}
    return ModelBuffers(tuple(buffers), tensor_buffer, n)
