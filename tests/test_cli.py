"""The command line: each command's output, and one clear line for every bad input."""

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tvmc_mobilenet.cli import main
from tvmc_mobilenet.targets.toolchain import nvcc_architectures


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern, exit_code=None):
    import re

    assert code != 0
    if exit_code is not None:
        assert code == exit_code
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


def test_help_imports_neither_torch_nor_tvm():
    proc = subprocess.run([sys.executable, "-m", "tvmc_mobilenet.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "build" in proc.stdout
    check = "import sys, tvmc_mobilenet.cli; print('torch' in sys.modules, 'tvm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip() == "False False"


def test_info_table_and_json(capsys):
    code, out, _ = cli(capsys, "info")
    assert code == 0
    assert "568,740,352" in out and "94.86%" in out and "74.59%" in out
    code, out, _ = cli(capsys, "info", "--alpha", "0.25", "--resolution", "128", "--json")
    data = json.loads(out)
    assert data["model"]["alpha"] == 0.25 and len(data["layers"]) == 29


def test_targets(capsys):
    code, out, _ = cli(capsys, "targets")
    assert code == 0 and "rasp4b" in out and "jetson-orin-nano" in out
    code, out, _ = cli(capsys, "targets", "--json")
    assert {t["name"] for t in json.loads(out)} >= {"host", "rasp4b", "a100"}


def test_env(capsys):
    code, out, _ = cli(capsys, "env", "--json")
    assert code == 0 and json.loads(out)["apache-tvm-ffi"] == importlib.metadata.version("apache-tvm-ffi")
    code, out, _ = cli(capsys, "env")
    assert "apache-tvm" in out and "nvcc" in out


def test_build_run_bench(capsys, tmp_path):
    out_file = tmp_path / "m.tar"
    code, out, err = cli(capsys, "build", "-a", "0.25", "-r", "64", "-o", str(out_file))
    assert code == 0, err
    assert "verified against pytorch" in out and str(out_file) in out
    assert "BuildConfig(model=ModelOptions(alpha=0.25" in err  # the options are printed at the start

    code, out, err = cli(capsys, "run", str(out_file), "--output", str(tmp_path / "logits.npy"))
    assert code == 0, err
    assert "top-5 classes" in out and "matches the reference output" in out
    assert np.load(tmp_path / "logits.npy").shape == (1, 1000)

    np.save(tmp_path / "in.npy", np.zeros((1, 3, 64, 64), np.float32))
    code, out, err = cli(capsys, "run", str(out_file), "--input", str(tmp_path / "in.npy"), "--top", "3")
    assert code == 0 and "top-3" in out

    from PIL import Image

    from tvmc_mobilenet.model.labels import imagenet_classes

    Image.new("RGB", (80, 60), (200, 30, 10)).save(tmp_path / "red.png")
    code, out, err = cli(capsys, "run", str(out_file), "--image", str(tmp_path / "red.png"), "--output", str(tmp_path / "red.npy"))
    assert code == 0, err
    best = int(np.argmax(np.load(tmp_path / "red.npy")[0]))
    assert "red.png: top-5 classes" in out and f"{best} {imagenet_classes()[best]}: " in out and "normalised with 'torch'" in out
    (tmp_path / "bad.jpg").write_text("no")
    code, out, err = cli(capsys, "run", str(out_file), "--image", str(tmp_path / "bad.jpg"))
    assert code == 2 and "cannot be decoded" in err and len(err.strip().splitlines()) == 1

    code, out, err = cli(capsys, "bench", str(out_file), "--repeat", "3", "--number", "2", "--profile", "--json", str(tmp_path / "b.json"))
    assert code == 0, err
    assert "median" in out and "images/s" in out and "Per-kernel profile" in out
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["latency"]["repeat"] == 3 and report["output_check"]["passed"]
    assert {row["kind"] for row in report["profile"]} >= {"pointwise", "depthwise"}


@pytest.mark.parametrize(
    "args, pattern, exit_code",
    [
        (["build", "--alpha", "0"], r"alpha must be a number in \(0, 1\], got 0.0", 2),
        (["build", "--alpha", "1.5"], r"alpha must be a number in \(0, 1\], got 1.5", 2),
        (["build", "--alpha", "abc"], r"Invalid value for '--alpha'.*'abc' is not a valid float", 2),
        (["build", "--resolution", "100"], r"resolution must be a multiple of 32 from 32 to 512", 2),
        (["build", "--resolution", "1024"], r"resolution must be a multiple of 32 from 32 to 512", 2),
        (["build", "--resolution", "x"], r"Invalid value for '--resolution'", 2),
        (["build", "--batch", "0"], r"batch size must be an integer from 1 to 1024, got 0", 2),
        (["build", "--classes", "0"], r"number of classes must be a positive integer", 2),
        (["build", "--variant", "v2"], r"Invalid value for '--variant'.*'v2' is not one of", 2),
        (["build", "--target", "nope"], r"unknown target 'nope'", 3),
        (["build", "--target", "cuda"], r"target 'cuda' needs a GPU architecture .* give one with --arch sm_XX", 3),
        (["build", "--target", "cuda", "--arch", "90"], r"CUDA architecture '90' is not of the form sm_XX", 3),
        (["build", "--arch", "sm_90"], r"--arch sm_90 sets a GPU architecture, but 'host' is a cpu target", 3),
        (["build", "--model", "/no/such.onnx"], r"model file '/no/such.onnx' does not exist", 2),
        (["build", "--weights", "/no/such.pt", "-a", "0.25", "-r", "64"], r"weights file '/no/such.pt' does not exist", 2),
        (["build", "--tuning-db", "/no/such/db", "-a", "0.25", "-r", "64"], r"tuning database '/no/such/db' is not a directory", 7),
        (["info", "--alpha", "-1"], r"alpha must be a number in \(0, 1\]", 2),
        (["run", "/no/such.tar"], r"artifact '/no/such.tar' does not exist", 4),
        (["run", "x.tar", "--preprocess", "caffe"], r"Invalid value for '--preprocess': 'caffe' is not one of 'torch', 'tf', 'none'", 2),
        (["build", "--preprocess", "caffe"], r"Invalid value for '--preprocess'", 2),
        (["bench", "/no/such.tar"], r"artifact '/no/such.tar' does not exist", 4),
        (["bench", "x.tar", "--repeat", "0"], r"Invalid value for '--repeat'", 2),
        (["frobnicate"], r"No such command 'frobnicate'", 2),
        (["tune", "--trials", "0"], r"--trials must be a positive integer, got 0", 2),
        (["tune", "--trials", "many"], r"Invalid value for '--trials'", 2),
        (["tune", "--tasks", "winograd"], r"unknown task kind 'winograd' in --tasks", 2),
        (["tune", "--timeout", "-5"], r"--timeout must be between 1 and 3600 seconds", 2),
        (["tune", "--target", "rasp4b"], r"measured on the device itself: give --rpc-tracker HOST\[:PORT\] --rpc-key rasp4b", 3),
        (["tune", "--rpc-tracker", "127.0.0.1:9190", "--rpc-key", "x"], r"target 'host' runs on this machine; drop --rpc-tracker", 2),
        (["tune", "--alpha", "2"], r"alpha must be a number in \(0, 1\]", 2),
        (["build", "--tuning-db", "/no/such/db", "--no-tuning-db"], r"tuning database '/no/such/db' is not a directory", 7),
        (["build", "--batch", "many"], r"Invalid value for '--batch' / '-b': 'many' is not a valid integer", 2),
        (["build", "--seed", "1.5"], r"Invalid value for '--seed'", 2),
        (["bench", "x.tar", "--number", "0"], r"Invalid value for '--number'", 2),
        (["bench", "x.tar", "--warmup", "-1"], r"Invalid value for '--warmup'", 2),
        (["bench", "x.tar", "--rpc-timeout", "0"], r"Invalid value for '--rpc-timeout'", 2),
        (["run", "x.tar", "--rpc-port", "99999"], r"Invalid value for '--rpc-port'", 2),
        (["tune", "--timeout", "soon"], r"Invalid value for '--timeout'", 2),
        (["sweep", "--rounds", "0"], r"Invalid value for '--rounds'", 2),
        (["sweep", "--repeat", "x"], r"Invalid value for '--repeat'", 2),
        (["device", "tracker", "--port", "0"], r"Invalid value for '--port'", 2),
        (["device", "emulate", "--port", "65535"], r"Invalid value for '--port'", 2),
        (["info", "--resolution", "31"], r"resolution must be a multiple of 32", 2),
        (["build", "--cuda-compiler", "clang"], r"Invalid value for '--cuda-compiler': 'clang' is not one of 'nvcc', 'nvrtc'", 2),
        (["build", "--cuda-compiler", "nvrtc"], r"--cuda-compiler compiles GPU kernels, but 'host' is a cpu target", 3),
        (["tune", "--cuda-compiler", "nvcc"], r"--cuda-compiler compiles GPU kernels, but 'host' is a cpu target", 3),
        (["sweep", "--cuda-compiler", "nvrtc", "--out", "/nonexistent/sweep"], r"--cuda-compiler compiles GPU kernels, but 'host'", 3),
        (["build", "--quantize", "int4"], r"Invalid value for '--quantize': 'int4' is not 'int8'", 2),
        (["tune", "--quantize", "int4"], r"Invalid value for '--quantize'", 2),
        (["build", "--calibration", "/tmp"], r"--calibration calibrates a quantized build: give --quantize int8 with it", 2),
        (["build", "--quantize", "int8", "--model", "m.onnx"], r"--quantize applies to the built-in MobileNet", 2),
        (
            ["build", "--quantize", "int8", "-a", "0.25", "-r", "64", "--calibration", "/no/such/dir"],
            r"--calibration '/no/such/dir' does not exist",
            2,
        ),
    ],
)
@pytest.mark.faults("bad_input")
def test_bad_input_is_one_clear_line(capsys, args, pattern, exit_code):
    code, out, err = cli(capsys, *args)
    assert_one_line_error(code, err, pattern, exit_code)


@pytest.mark.faults("bad_input")
@pytest.mark.nvcc
@pytest.mark.nvrtc11
def test_a_cuda_compiler_that_cannot_target_the_gpu_is_refused(capsys):
    code, _, err = cli(capsys, "build", "--target", "cuda", "--arch", "sm_100", "--cuda-compiler", "nvrtc")
    refusal = r"CUDA 11.8's NVRTC cannot compile for sm_100 \(it targets sm_35 to sm_90, no 'a' variants\); use nvcc"
    assert_one_line_error(code, err, refusal, 3)
    if "sm_72" not in nvcc_architectures():
        code, _, err = cli(capsys, "build", "--target", "jetson-xavier", "--cuda-compiler", "nvcc")
        assert_one_line_error(code, err, r"this nvcc cannot compile for sm_72 \(it supports sm_75", 3)


@pytest.mark.faults("bad_input")
def test_corrupt_artifact_and_bad_input_file(capsys, tmp_path, tiny_artifact):
    corrupt = tmp_path / "c.tar"
    corrupt.write_bytes(tiny_artifact.read_bytes()[:5000])
    code, _, err = cli(capsys, "run", str(corrupt))
    assert_one_line_error(code, err, r"(not a readable tvmc-mobilenet artifact|lacks the member)", 4)

    not_npy = tmp_path / "in.npy"
    not_npy.write_text("nope")
    code, _, err = cli(capsys, "run", str(tiny_artifact), "--input", str(not_npy))
    assert_one_line_error(code, err, r"is not a NumPy .npy array", 2)

    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 32, 32), np.float32))
    code, _, err = cli(capsys, "run", str(tiny_artifact), "--input", str(tmp_path / "wrong.npy"))
    assert_one_line_error(code, err, r"input has shape \(1, 3, 32, 32\).*expects shape \(1, 3, 96, 96\)", 2)


@pytest.mark.faults("bad_input")
def test_tampered_artifact_is_refused_by_run_and_bench(capsys, artifact_copy):
    from .runtime.test_artifact import _rewrite

    _rewrite(artifact_copy, lambda m: m["library"].update(sha256="f" * 64))
    for command in ("run", "bench"):
        code, _, err = cli(capsys, command, str(artifact_copy))
        assert_one_line_error(code, err, r"sha256 .* refusing to load it", 4)


#: The console script of the environment running the tests (its bin/ need not be on PATH).
SCRIPT = str(Path(sys.executable).parent / "tvmc-mobilenet")


def test_console_script_is_installed():
    proc = subprocess.run([SCRIPT, "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "tvmc-mobilenet" in proc.stdout


def test_build_failure_exit_code_from_the_console_script(tmp_path):
    proc = subprocess.run([SCRIPT, "build", "--alpha", "2", "-o", str(tmp_path / "m.tar")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: width multiplier alpha")
    assert not (tmp_path / "m.tar").exists()


@pytest.mark.faults("bad_input")
def test_pickled_input_array_is_refused_without_unpickling(capsys, tmp_path, tiny_artifact):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = cli(capsys, "run", str(tiny_artifact), "--input", str(tmp_path / "objects.npy"))
    assert_one_line_error(code, err, r"is not a NumPy .npy array", 2)


class _Payload:
    """Unpickling this runs a shell command: what a malicious "checkpoint" would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.faults("bad_input")
def test_weights_file_carrying_code_is_refused_and_not_run(capsys, tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"conv.weight": _Payload(marker)}, protocol=2))
    code, _, err = cli(capsys, "build", "-a", "0.25", "-r", "64", "--weights", str(tmp_path / "evil.pt"), "-o", str(tmp_path / "m.tar"))
    assert_one_line_error(code, err, r"is not a PyTorch state_dict", 2)
    assert not marker.exists() and not (tmp_path / "m.tar").exists()


def _global_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    import shutil

    if shutil.which("ip") is None:
        return None
    proc = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, timeout=10)
    for line in proc.stdout.splitlines():
        return line.split()[3].split("/")[0]
    return None


@pytest.mark.parametrize("exposed", [False, True])
def test_tracker_listens_on_loopback_unless_told_otherwise_and_warns_then(exposed):
    """TVM's RPC servers run whatever code they are sent: loopback by default, a warning otherwise."""
    import signal

    from tests.helpers import accepts_connections, free_port, wait_until_listening

    outside = _global_address()
    if outside is None:
        pytest.skip("this machine has no address besides loopback to probe from")
    port = free_port()
    args = [SCRIPT, "device", "tracker", "--port", str(port)] + (["--host", "0.0.0.0"] if exposed else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_listening(port, proc)
        assert accepts_connections(outside, port) == exposed
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    warned = "warning: listening on 0.0.0.0, not only on this machine: a TVM RPC tracker runs whatever code it is sent" in err
    assert warned == exposed, err
