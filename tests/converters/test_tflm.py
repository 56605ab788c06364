import numpy as np
import pytest

from tfedge.converters import interpreter as litert
from tfedge.converters import tflite_reader, tflm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def arena(int8_tflite):
    return tflm.find_arena_size(int8_tflite)


def test_arena_is_the_smallest_that_works(int8_tflite, arena):
    assert arena % tflm.ALIGNMENT == 0
    with tflm._Session(int8_tflite, timeout=60) as session:
        assert session.fits(arena)
        assert not session.fits(arena - tflm.ALIGNMENT)


def test_arena_holds_at_least_the_largest_activation_pair(int8_tflite, arena):
    # The stem conv reads the 32x32x1 input while writing a 16x16x16 map: both live at once.
    model = tflite_reader.read_tflite(int8_tflite)
    main = model.subgraphs[0]
    stem = main.operators[0]
    live = main.tensors[stem.inputs[0]].nbytes + main.tensors[stem.outputs[0]].nbytes
    assert arena > live


def test_outputs_equal_the_reference_kernels_on_20_random_inputs(int8_tflite, arena):
    agreement = tflm.compare_with_reference(int8_tflite, num_inputs=20, arena_size=arena)
    assert agreement.num_inputs == 20
    assert agreement.total_values == 20 * 10
    assert agreement.exact, agreement


def test_run_matches_litert_reference_on_real_images(int8_tflite, digits, arena):
    reference = litert.make_interpreter(int8_tflite, reference=True)
    scale, zero_point = reference.get_input_details()[0]["quantization"]
    samples = [[litert.quantize(x[None], scale, zero_point)] for x in digits.x_val[:5]]
    expected = [litert.invoke(reference, s)[0] for s in samples]
    actual = tflm.run(int8_tflite, samples, arena_size=arena)
    for e, (a,) in zip(expected, actual):
        np.testing.assert_array_equal(a, e)
    assert len({a[0].tobytes() for a in actual}) > 1  # different images, different outputs


def test_a_crash_becomes_an_exception(int8_tflite):
    # Far too small an arena segfaults the TFLM interpreter; the caller's process survives.
    sample = [np.zeros((1, 32, 32, 1), np.int8)]
    with pytest.raises(tflm.TFLMError, match="failed with a 64-byte arena"):
        tflm.run(int8_tflite, [sample], arena_size=64)


def test_malformed_model_is_refused_before_any_subprocess():
    with pytest.raises(tflite_reader.TFLiteFormatError):
        tflm.find_arena_size(b"\x00" * 64)


def test_quantize_rounds_half_away_from_zero():
    q = litert.quantize(np.array([0.5, 1.5, -0.5, -1.5, 2.49, 1000.0, -1000.0]), 1.0, 0)
    np.testing.assert_array_equal(q, [1, 2, -1, -2, 2, 127, -128])
    np.testing.assert_allclose(litert.dequantize(np.int8(-128), 1 / 255, -128), 0.0)


def with_opcode_replaced(tflite_bytes, old_name, new_code):
    """The same model with every `old_name` op turned into builtin `new_code`."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    codes = tflite_reader.BUILTIN_OPERATORS
    for code in model.operatorCodes:
        if codes[max(code.builtinCode, code.deprecatedBuiltinCode)] == old_name:
            code.builtinCode = code.deprecatedBuiltinCode = new_code
    builder = flatbuffers.Builder(len(tflite_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_op_tflm_lacks_fails_at_once_with_its_message(int8_tflite):
    lsh = tflite_reader.BUILTIN_OPERATORS.index("LSH_PROJECTION")
    patched = with_opcode_replaced(int8_tflite, "SOFTMAX", lsh)
    assert tflite_reader.read_tflite(patched).op_names()[-1] == "LSH_PROJECTION"
    with pytest.raises(tflm.TFLMError, match="cannot run the model") as info:
        tflm.find_arena_size(patched)
    assert "exit status 3" in str(info.value)
    assert "op LSH_PROJECTION #" in str(info.value)  # the op, found in the model by its name
    assert "has no kernel in TFLM's op resolver" in str(info.value)


# --- The recommended arena and the RAM budget.


@pytest.mark.parametrize("minimum, recommended", [
    (16, 16 + 1024),  # the 1 KiB floor
    (10_240, 10_240 + 1024),  # 10% == 1 KiB
    (10_256, 11_296),  # 10% = 1025.6 -> 1026, then up to a multiple of 16
    (100_000, 110_000),
    (1 << 20, 1_153_440),
])
def test_recommended_is_minimum_plus_the_larger_of_1kib_and_10_percent(minimum, recommended):
    assert tflm.recommended_arena_size(minimum) == recommended
    assert recommended % tflm.ALIGNMENT == 0
    assert recommended - minimum >= max(1024, minimum / 10)


@pytest.mark.parametrize("minimum", [0, -16, 1.5, None, True])
def test_recommended_refuses_what_is_no_size(minimum):
    with pytest.raises(ValueError, match="`minimum` must be a positive number of bytes"):
        tflm.recommended_arena_size(minimum)


def test_budget_caps_the_margin_but_never_the_minimum():
    report = tflm.arena_for_budget(45_312)
    assert (report.minimum, report.recommended, report.ram_budget) == (45_312, 49_856, None)
    assert report.margin == 4_544 and not report.margin_capped and report.headroom is None
    roomy = tflm.arena_for_budget(45_312, 64 * 1024)
    assert roomy.recommended == 49_856 and roomy.headroom == 64 * 1024 - 49_856
    tight = tflm.arena_for_budget(45_312, 46_010)  # aligned down to 16 bytes
    assert (tight.recommended, tight.margin_capped, tight.headroom) == (46_000, True, 10)
    exact = tflm.arena_for_budget(45_312, 45_312)
    assert exact.recommended == 45_312 and exact.margin == 0


def test_over_budget_names_both_sizes_and_the_fixes():
    with pytest.raises(tflm.ArenaBudgetError) as info:
        tflm.arena_for_budget(45_312, 40_000)
    message = str(info.value)
    assert "needs at least 45,312 bytes" in message and "49,856 recommended" in message
    assert "5,312 bytes (13%) more than the RAM budget of 40,000 bytes" in message
    assert "tfedge.prune_channels" in message and "width" in message and "input" in message
    assert (info.value.minimum, info.value.recommended, info.value.ram_budget) == (
        45_312, 49_856, 40_000)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("budget", [0, -1, 1.5e5, "256K", True])
def test_bad_budgets_are_refused_before_anything_runs(budget):
    with pytest.raises(ValueError, match="`ram_budget` must be a positive number of bytes"):
        tflm.arena_report(b"\x00" * 64, ram_budget=budget)  # not even a model: never read


def test_arena_report_measures_and_checks_the_budget(int8_tflite, arena):
    report = tflm.arena_report(int8_tflite, ram_budget=arena + 100)
    assert report.minimum == arena
    assert report.recommended == arena + 96 and report.margin_capped
    with pytest.raises(tflm.ArenaBudgetError, match=f"needs at least {arena:,} bytes") as info:
        tflm.arena_report(int8_tflite, ram_budget=arena - tflm.ALIGNMENT)
    assert f"RAM budget of {arena - tflm.ALIGNMENT:,} bytes" in str(info.value)
    # What the report recommends runs on TFLM.
    unlimited = tflm.arena_report(int8_tflite)
    assert unlimited.recommended == tflm.recommended_arena_size(arena)
    with tflm._Session(int8_tflite, timeout=60) as session:
        assert session.fits(unlimited.recommended)
