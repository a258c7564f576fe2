"""`build --model m.tflite`: Keras MobileNets exported to float TFLite build through TVM's TFLite
frontend, verify against LiteRT on the same file, keep NHWC end to end and classify images; files
that are no TFLite model end in one clear line (full-integer files: test_tflite_int8.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="exporting test models needs tensorflow-cpu (the test extra)")
pytest.importorskip("tflite", reason="TFLite import needs the tflite package (the tflite extra)")
pytest.importorskip("ai_edge_litert", reason="verifying TFLite models needs ai-edge-litert (the tflite extra)")

from tests.compiler.tflite_models import keras_mobilenet_tflite  # noqa: E402
from tvmc_mobilenet.build import BuildConfig, build_model  # noqa: E402
from tvmc_mobilenet.compiler.frontend import model_file_format  # noqa: E402
from tvmc_mobilenet.errors import BadInputError  # noqa: E402
from tvmc_mobilenet.options import ModelOptions  # noqa: E402
from tvmc_mobilenet.runtime.artifact import open_artifact  # noqa: E402


@pytest.fixture(scope="module")
def keras_tflite(tmp_path_factory):
    return keras_mobilenet_tflite(tmp_path_factory.mktemp("tflite") / "keras_mobilenet.tflite")


@pytest.fixture(scope="module")
def keras_artifact(keras_tflite, tmp_path_factory):
    return build_model(BuildConfig(model=ModelOptions(model_file=keras_tflite), output=tmp_path_factory.mktemp("art") / "k.tar"))


def test_a_keras_tflite_builds_and_verifies_against_litert(keras_artifact, keras_tflite):
    m = keras_artifact.manifest
    assert m["model"]["source"] == "tflite" and m["model"]["file"] == keras_tflite.name
    assert m["reference"]["framework"] == "litert" and m["verification"]["status"] == "passed"
    assert m["input"]["shape"] == [1, 64, 64, 3] and m["input"]["layout"] == "NHWC"
    assert m["input"]["preprocess"]["name"] == "tf"  # TensorFlow's normalisation by default
    assert m["layout"]["transforms"] == 0  # NHWC from the input on: nothing to transpose
    assert [k["kind"] for k in m["kernels"]].count("dense") == 1  # the 1×1 classifier convolution is the built-in network's matrix product
    assert m["output"]["shape"] == [1, 1000]


def test_a_dynamic_batch_export_imports_with_the_files_static_shapes(tmp_path):
    """Keras's default export: the batch is dynamic and the classifier's Reshape shape is computed
    in the graph (Shape → StridedSlice → Pack), which TVM's converter alone cannot import."""
    path = keras_mobilenet_tflite(tmp_path / "dynamic.tflite", fixed_batch=False, softmax=True)
    result = build_model(BuildConfig(model=ModelOptions(model_file=path), output=tmp_path / "d.tar"))
    assert result.verification["status"] == "passed" and result.manifest["input"]["shape"] == [1, 64, 64, 3]


def test_run_classifies_an_image_on_the_tflite_build(keras_artifact, keras_tflite, tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    from tvmc_mobilenet.model.preprocess import NORMALISATIONS, read_image
    from tvmc_mobilenet.runtime.commands import RunConfig, run_artifact

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    result = run_artifact(RunConfig(keras_artifact.artifact_path, images=(tmp_path / "photo.jpg",), output_file=tmp_path / "o.npy"))
    assert result.normalisation == "tf" and result.classes[0][0].name is not None
    x = read_image(tmp_path / "photo.jpg", (1, 64, 64, 3), NORMALISATIONS["tf"])[None]
    interpreter = Interpreter(model_path=str(keras_tflite))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    expected = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    got = np.load(tmp_path / "o.npy")
    assert np.max(np.abs(got - expected)) <= 1e-4 * np.max(np.abs(expected))
    assert open_artifact(keras_artifact.artifact_path).normalisation.name == "tf"


@pytest.mark.faults("bad_input")
def test_files_that_are_no_float_tflite_model(tmp_path):
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(BadInputError, match=r"is named \.tflite but is no TFLite flatbuffer"):
        model_file_format(tmp_path / "junk.tflite")
    (tmp_path / "weights.bin").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    with pytest.raises(BadInputError, match=r"neither ONNX nor TFLite; it looks like a zip archive \(a PyTorch checkpoint\?"):
        build_model(BuildConfig(model=ModelOptions(model_file=tmp_path / "weights.bin"), output=tmp_path / "x.tar"))
    assert not (tmp_path / "x.tar").exists()
