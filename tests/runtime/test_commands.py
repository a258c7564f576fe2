"""run and bench as library calls: typed results, the reference check, the JSON report."""

import json

import numpy as np
import pytest

from tvmc_mobilenet.errors import ArtifactError, BadInputError, VerificationError
from tvmc_mobilenet.options import TimingOptions
from tvmc_mobilenet.runtime.artifact import open_artifact, write_artifact
from tvmc_mobilenet.runtime.commands import BenchConfig, RunConfig, bench_artifact, load_artifact, run_artifact


def test_run_checks_the_reference_and_saves_logits(tiny_artifact, tmp_path):
    result = run_artifact(RunConfig(tiny_artifact, output_file=tmp_path / "logits.npy", top=3))
    assert result.comparison is not None and result.comparison.passed
    assert len(result.classes) == 1 and len(result.classes[0]) == 3
    logits = np.load(tmp_path / "logits.npy")
    assert result.classes[0][0].index == int(np.argmax(logits[0]))


def test_run_of_another_input_is_not_compared(tiny_artifact, tmp_path):
    data = np.zeros(open_artifact(tiny_artifact).input_shape, dtype=np.float32)
    np.save(tmp_path / "x.npy", data)
    assert run_artifact(RunConfig(tiny_artifact, input_file=tmp_path / "x.npy")).comparison is None


def test_bench_times_profiles_and_writes_its_report(tiny_artifact, tmp_path):
    config = BenchConfig(tiny_artifact, timing=TimingOptions(repeat=2, number=1, warmup=0), profile=True, json_file=tmp_path / "b.json")
    result = bench_artifact(config)
    assert result.where == "local" and result.stats.repeat == 2 and result.comparison.passed
    assert result.profile and abs(sum(r.share for r in result.profile) - 100.0) < 1e-6
    assert json.loads((tmp_path / "b.json").read_text())["latency"]["repeat"] == 2
    assert result.images_per_second > 0
    assert load_artifact(tiny_artifact).where == "local"


@pytest.mark.faults("bad_input")
def test_bench_profile_needs_the_kernel_table(artifact_copy):
    art = open_artifact(artifact_copy)
    manifest = dict(art.manifest)
    del manifest["kernels"]
    write_artifact(artifact_copy, manifest, {k: v for k, v in art.members.items() if k != "manifest.json"})
    with pytest.raises(ArtifactError, match="no kernel table"):
        bench_artifact(BenchConfig(artifact_copy, profile=True))


@pytest.mark.faults("fault")
def test_a_wrong_reference_fails_bench(artifact_copy):
    art = open_artifact(artifact_copy)
    members = {k: v for k, v in art.members.items() if k != "manifest.json"}
    from tvmc_mobilenet.runtime.artifact import REFERENCE_OUTPUT, npy_bytes

    members[REFERENCE_OUTPUT] = npy_bytes(art.reference_output() + 1.0)
    write_artifact(artifact_copy, art.manifest, members)
    with pytest.raises(VerificationError, match="differs from the reference"):
        bench_artifact(BenchConfig(artifact_copy, timing=TimingOptions(repeat=1, number=1, warmup=0)))


def test_run_classifies_images_with_class_names(tiny_artifact, tmp_path):
    """Images are preprocessed as the build recorded (the built-in network: torch), run through the
    module and named with ImageNet's classes; the logits are the PyTorch network's on the same
    preprocessed images."""
    import torch
    from PIL import Image

    from tests.helpers import TINY
    from tvmc_mobilenet.model.labels import imagenet_classes
    from tvmc_mobilenet.model.network import build_network
    from tvmc_mobilenet.model.preprocess import NORMALISATIONS, read_image
    from tvmc_mobilenet.model.spec import ModelConfig

    rng = np.random.default_rng(0)
    paths = []
    for name, size in (("noise.png", (120, 90)), ("cat.jpg", (64, 200))):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(tmp_path / name)
    result = run_artifact(RunConfig(tiny_artifact, images=tuple(paths), output_file=tmp_path / "logits.npy"))
    assert result.sources == ["noise.png", "cat.jpg"] and result.normalisation == "torch" and result.comparison is None
    logits = np.load(tmp_path / "logits.npy")
    assert logits.shape == (2, 1000)
    for row, out in zip(result.classes, logits, strict=True):
        assert len(row) == 5 and row[0].index == int(np.argmax(out)) and row[0].name == imagenet_classes()[row[0].index]
    shape = open_artifact(tiny_artifact).input_shape
    batch = np.stack([read_image(p, shape, NORMALISATIONS["torch"]) for p in paths])
    with torch.no_grad():
        expected = build_network(ModelConfig(**TINY), seed=0)(torch.from_numpy(batch)).numpy()
    assert np.max(np.abs(logits - expected)) <= 1e-4 * np.max(np.abs(expected))
    tf = run_artifact(RunConfig(tiny_artifact, images=(paths[0],), preprocess="tf", output_file=tmp_path / "tf.npy"))
    assert tf.normalisation == "tf" and not np.allclose(np.load(tmp_path / "tf.npy")[0], logits[0])


def test_run_uses_the_recorded_normalisation_and_a_labels_file(artifact_copy, tmp_path):
    from PIL import Image

    art = open_artifact(artifact_copy)
    manifest = json.loads(json.dumps(art.manifest))
    manifest["input"]["preprocess"]["name"] = "none"
    write_artifact(artifact_copy, manifest, {k: v for k, v in art.members.items() if k != "manifest.json"})
    Image.new("RGB", (96, 96), (1, 2, 3)).save(tmp_path / "x.png")
    (tmp_path / "labels.txt").write_text("".join(f"thing {i}\n" for i in range(1000)))
    result = run_artifact(RunConfig(artifact_copy, images=(tmp_path / "x.png",), labels=tmp_path / "labels.txt", top=2))
    assert result.normalisation == "none"
    assert [p.name for p in result.classes[0]] == [f"thing {p.index}" for p in result.classes[0]]


def test_images_fill_batches_of_the_model(tmp_path):
    from PIL import Image

    from tvmc_mobilenet.model.preprocess import NORMALISATIONS
    from tvmc_mobilenet.runtime.commands import image_batches

    paths = []
    for i in range(4):
        Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    batches = image_batches(tuple(paths), (3, 3, 8, 8), NORMALISATIONS["none"])
    assert [b.shape for b in batches] == [(3, 3, 8, 8), (3, 3, 8, 8)]
    assert [float(b[0, 0, 0]) for b in batches[1]] == [3.0, 3.0, 3.0]  # the last image again, its outputs dropped


@pytest.mark.faults("bad_input")
@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(images=("a.png",), input_file="x.npy"), "either --input .* or --image files, not both"),
        (dict(preprocess="tf"), "--preprocess says how --image files are normalised; it needs --image"),
        (dict(images=("a.png",), preprocess="caffe"), "--preprocess must be one of torch, tf, none"),
    ],
)
def test_run_options_that_do_not_go_together(tiny_artifact, config, message):
    with pytest.raises(BadInputError, match=message):
        RunConfig(tiny_artifact, **config)


@pytest.mark.faults("bad_input")
def test_run_refuses_labels_of_another_length_and_undecodable_images(tiny_artifact, tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(BadInputError, match=r"has 2 names, but the model has 1000 outputs"):
        run_artifact(RunConfig(tiny_artifact, labels=tmp_path / "labels.txt"))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(BadInputError, match=r"image '.*broken\.jpg' cannot be decoded"):
        run_artifact(RunConfig(tiny_artifact, images=(tmp_path / "broken.jpg",)))


def test_top_classes_take_a_models_own_softmax_as_it_is():
    from tvmc_mobilenet.runtime.results import top_classes

    probabilities = np.array([[0.1, 0.7, 0.2]])  # a model that ends in softmax (Keras, many .tflite files)
    assert top_classes(probabilities, 2) == [[(1, 0.7), (2, 0.2)]]
    logits = np.array([[0.0, np.log(3.0), 0.0]])  # softmax: 0.2, 0.6, 0.2
    (first, p), _ = top_classes(logits, 2)[0]
    assert first == 1 and p == pytest.approx(0.6)
