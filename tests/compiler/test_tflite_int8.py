"""`build --model m_int8.tflite`: full-integer Keras MobileNets (TensorFlow's converter) read with
their own scales and zero points onto our int8 kernels, verified against LiteRT on the same file;
what cannot be mapped ends in one line."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="exporting test models needs tensorflow-cpu (the test extra)")
pytest.importorskip("tflite", reason="TFLite import needs the tflite package (the tflite extra)")
pytest.importorskip("ai_edge_litert", reason="verifying TFLite models needs ai-edge-litert (the tflite extra)")

from tests.compiler.tflite_models import keras_mobilenet_tflite, tflite_bytes  # noqa: E402
from tvmc_mobilenet.build import BuildConfig, build_model  # noqa: E402
from tvmc_mobilenet.compiler.frontend import read_int8_tflite  # noqa: E402
from tvmc_mobilenet.errors import BadInputError  # noqa: E402
from tvmc_mobilenet.options import ModelOptions  # noqa: E402


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory):
    """int8 in, int8 logits out, 0.25-64: the stride-2 layers pad (0, 0, 1, 1), TensorFlow's SAME."""
    return keras_mobilenet_tflite(tmp_path_factory.mktemp("tflite8") / "keras_int8.tflite", int8=True)


@pytest.fixture(scope="module")
def int8_artifact(int8_tflite, tmp_path_factory):
    return build_model(BuildConfig(model=ModelOptions(model_file=int8_tflite), output=tmp_path_factory.mktemp("art8") / "k8.tar"))


def _inputs(shape, count=3):
    rng = np.random.default_rng(7)
    return [rng.uniform(-1.2, 1.2, shape).astype(np.float32) for _ in range(count)]


def test_the_files_integer_graph_in_numpy_is_litert_bit_for_bit(int8_tflite):
    """Our reading of the file (scales, zero points, SAME pads, the MEAN's requantization,
    float32 requantization as XNNPACK does it) executed by NumPy gives LiteRT's output exactly."""
    net, _name, litert = read_int8_tflite(int8_tflite)
    assert net.input_layout == "NHWC" and net.input_shape == (1, 64, 64, 3)
    assert net.input_zero_point != 0 and net.pool_requantize is not None  # the file's own quantization
    assert any(c.padding == (0, 0, 1, 1) for c in net.convs) and all(c.requantize.low == 0 for c in net.convs)
    for x in _inputs(net.input_shape):
        expected = litert(x)
        assert np.ptp(expected) > 20 * net.logits_scale  # logits spread over many codes, not one
        np.testing.assert_array_equal(net.reference(x), expected)


def test_an_int8_tflite_builds_onto_the_int8_kernels_and_matches_litert(int8_artifact, int8_tflite):
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local

    m = int8_artifact.manifest
    assert m["model"]["source"] == "tflite" and m["model"]["quantize"] == "int8 (the file's)"
    assert m["verification"]["status"] == "passed" and m["verification"]["max_abs_error"] == 0
    assert m["input"] == {**m["input"], "shape": [1, 64, 64, 3], "dtype": "float32", "layout": "NHWC"}
    assert m["layout"]["transforms"] == 0
    convs = [k for k in m["kernels"] if k["kind"] in ("pointwise", "depthwise")]
    assert convs and all(k["args"][0][1] in ("uint8", "int8") for k in convs)  # 8-bit activations in every convolution
    q = m["quantization"]
    assert q["input"]["zero_point"] != 0 and q["against_fp32"]["status"] == "skipped" and len(q["layers"]) == 27
    _net, _name, litert = read_int8_tflite(int8_tflite)
    model = load_local(open_artifact(int8_artifact.artifact_path))
    for x in _inputs((1, 64, 64, 3)):
        np.testing.assert_array_equal(model.run(x), litert(x))


def test_the_arm_operand_type_computes_the_same(int8_tflite):
    """The graph whose dense convolutions read int8 codes (Arm ``sdot``'s operands, the rasp4b and
    rasp5 builds) shifts the input's and the activations' codes by -128 and the biases back: with
    the file's input zero point and SAME pads it still gives LiteRT's output exactly (compiled
    for this host, where the same integer graph runs)."""
    import tvm
    from tvm import relax

    from tvmc_mobilenet.compiler.passes import legalize_and_fuse, lower, schedule, simplify_for_inference
    from tvmc_mobilenet.targets.registry import resolve_target

    net, _name, litert = read_int8_tflite(int8_tflite)
    target = resolve_target("host").tvm_target()
    mod = schedule(legalize_and_fuse(simplify_for_inference(net.relax_module("int8")), target), target)
    vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=lower(target)), tvm.cpu())
    for x in _inputs(net.input_shape, count=2):
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), litert(x))


def test_a_float_interface_and_a_softmax_are_read(tmp_path):
    """The converter's default keeps float input and output (QUANTIZE first, DEQUANTIZE last);
    an int8 SOFTMAX last is computed in float on the file's output grid."""
    path = keras_mobilenet_tflite(tmp_path / "float_io.tflite", resolution=32, softmax=True, int8=True, int8_io=False)
    net, _name, litert = read_int8_tflite(path)
    assert net.softmax is not None and net.softmax.scale == pytest.approx(1 / 256)
    for x in _inputs(net.input_shape):
        expected = litert(x)
        assert expected.dtype == np.float32 and 0 <= expected.min() and expected.max() <= 1  # probabilities, dequantized
        assert np.max(np.abs(net.reference(x) - expected)) <= net.output_quantum * 1.001
    result = build_model(BuildConfig(model=ModelOptions(model_file=path), output=tmp_path / "s.tar"))
    assert result.verification["status"] == "passed"


def test_run_classifies_an_image_on_the_int8_build(int8_artifact, tmp_path):
    from PIL import Image

    from tvmc_mobilenet.runtime.commands import RunConfig, run_artifact

    Image.fromarray(np.random.default_rng(2).integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    result = run_artifact(RunConfig(int8_artifact.artifact_path, images=(tmp_path / "photo.png",), output_file=tmp_path / "o.npy"))
    assert result.normalisation == "tf" and result.classes[0][0].name is not None
    assert np.load(tmp_path / "o.npy").dtype == np.float32


@pytest.mark.faults("bad_input")
def test_an_int8_model_with_operators_we_cannot_map_is_named_in_one_line(tmp_path):
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(16, 16, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf.keras.layers.MaxPooling2D()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    (tmp_path / "maxpool.tflite").write_bytes(tflite_bytes(tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x)), 16, int8=True))
    with pytest.raises(BadInputError, match=r"operators MAX_POOL_2D cannot be mapped onto the int8 kernels"):
        build_model(BuildConfig(model=ModelOptions(model_file=tmp_path / "maxpool.tflite"), output=tmp_path / "m.tar"))
    assert not (tmp_path / "m.tar").exists()
