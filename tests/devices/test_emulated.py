"""The ARM path end to end on an emulated Raspberry Pi 4B: TVM's stock tracker and RPC servers,
the servers running on an aarch64 CPython under qemu (Cortex-A72), MobileNet cross-compiled here.

Every process is started here, listens on 127.0.0.1, and is stopped by its PID. Timings under
emulation say nothing about a real board; these tests check behaviour, not speed.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import tarfile
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tvmc_mobilenet.options import ModelOptions, RpcOptions, TargetOptions
from tvmc_mobilenet.cli import main
from tvmc_mobilenet.build import BuildConfig, build_model
from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model
from tvmc_mobilenet.tuning.database import RECORD_FILE, open_tuning_database
from tvmc_mobilenet.devices.emulated import prepare_sysroot, start_server, start_tracker, stop, wait_for_servers
from tvmc_mobilenet.errors import RpcError
from tvmc_mobilenet.runtime.rpc import tracker_summary

from tests.helpers import EMULATOR_DIR, free_port, wait_until_listening

pytestmark = [pytest.mark.emulated, pytest.mark.rpc]  # skipped, with the reason, without qemu or the cross compiler
KEY = "rasp4b"


class Lab:
    """A tracker and emulated servers on loopback; everything stopped by PID at the end."""

    def __init__(self, sysroot, logs: Path):
        self.sysroot, self.logs = sysroot, logs
        self.processes: list[subprocess.Popen] = []
        self.key_servers: list[tuple[subprocess.Popen, int]] = []
        port = free_port()
        self.tracker = ("127.0.0.1", port)
        self.processes.append(start_tracker("127.0.0.1", port, log_path=logs / "tracker.log"))
        deadline = time.time() + 30
        while True:
            try:
                tracker_summary(*self.tracker, timeout=5)
                break
            except RpcError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def server(self, key: str | None, register: bool = True, cpu: str = "cortex-a72") -> tuple[subprocess.Popen, int]:
        port = free_port()
        process = start_server(
            self.sysroot, key or "", self.tracker if register else None, port=port, cpu=cpu, log_path=self.logs / f"server-{port}.log"
        )
        self.processes.append(process)
        return process, port

    def close(self) -> None:
        for process in self.processes:
            stop(process)
        assert all(p.poll() is not None for p in self.processes)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    sysroot = prepare_sysroot(EMULATOR_DIR)
    lab = Lab(sysroot, tmp_path_factory.mktemp("device-logs"))
    try:
        lab.key_servers = [lab.server(KEY) for _ in range(2)]
        wait_for_servers(lab.tracker, KEY, 2, timeout=240, processes=[process for process, _ in lab.key_servers])
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def pi_artifact(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pi") / "pi.tar"
    result = build_model(BuildConfig(model=ModelOptions(alpha=0.25, resolution=128), target=TargetOptions(name="rasp4b"), output=out))
    assert result.verification["status"] == "skipped"
    return out


def tracker_args(lab) -> list[str]:
    return ["--rpc-tracker", f"{lab.tracker[0]}:{lab.tracker[1]}", "--rpc-key", KEY]


def test_emulated_device_is_an_aarch64_cortex_a72(lab):
    proc = subprocess.run(
        [str(lab.sysroot.python), "-c", "import platform, tvm; print(platform.machine(), tvm.__version__)"],
        env={**__import__("os").environ, "PYTHONPATH": str(lab.sysroot.site), "TVM_USE_RUNTIME_LIB": "1", "QEMU_CPU": "cortex-a72"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split() == ["aarch64", importlib.metadata.version("apache-tvm")], proc.stderr[-1000:]
    assert not (lab.sysroot.site / "tvm" / "lib" / "libtvm_compiler.so").exists()  # runtime only


def test_bench_over_the_tracker_checks_the_output_on_the_device(lab, pi_artifact, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", str(pi_artifact), *tracker_args(lab), "--repeat", "2", "--number", "1", "--warmup", "0", "--json", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    report = json.loads(out.read_text())
    assert report["output_check"]["passed"] and report["output_check"]["max_rel_error"] <= 1e-4
    assert report["where"] == f"key 'rasp4b' at tracker 127.0.0.1:{lab.tracker[1]}"
    assert report["target"] == "rasp4b" and report["latency"]["repeat"] == 2


def test_profile_is_refused_remotely_with_a_reason(lab, pi_artifact, capsys):
    code = main(["bench", str(pi_artifact), *tracker_args(lab), "--repeat", "1", "--number", "1", "--profile"])
    err = capsys.readouterr().err
    assert code == 2 and "--profile times kernels on this machine only" in err


def test_run_straight_to_a_server(lab, pi_artifact, capsys):
    server, port = lab.server(None, register=False)
    wait_until_listening(port, server, timeout=120)
    code = main(["run", str(pi_artifact), "--rpc-host", "127.0.0.1", "--rpc-port", str(port)])
    out = capsys.readouterr().out
    assert code == 0 and "matches the reference output" in out


@pytest.mark.faults("fault")
@pytest.mark.timeout(300)  # a hang past the 120 s step deadline would be the bug
def test_server_killed_mid_bench_is_a_clear_error(lab, pi_artifact, capsys):
    victim, port = lab.server(None, register=False)
    wait_until_listening(port, victim, timeout=120)
    threading.Timer(20, stop, args=(victim,)).start()  # dies while the benchmark runs
    code = main(["bench", str(pi_artifact), "--rpc-host", "127.0.0.1", "--rpc-port", str(port), "--repeat", "1000", "--rpc-timeout", "120"])
    err = capsys.readouterr().err
    assert code == 6, err
    assert err.strip().splitlines()[-1].startswith("error: ") and f"server 127.0.0.1:{port}" in err


def sessions_served(lab, port: int) -> int:
    return (lab.logs / f"server-{port}.log").read_text().count("connected from")


def test_remote_tuning_writes_records_that_a_rasp4b_build_applies(lab, tmp_path):
    work = tmp_path / "db"
    sessions_before = [sessions_served(lab, port) for _, port in lab.key_servers]
    result = tune_model(
        TuneConfig(
            model=ModelOptions(alpha=0.25, resolution=32),
            target=TargetOptions(name="rasp4b"),
            rpc=RpcOptions(tracker=f"{lab.tracker[0]}:{lab.tracker[1]}", key=KEY),
            trials=4,
            tasks="pointwise",
            work_dir=work,
            timeout=300,
            allow_emulated=True,  # the tuning path is what is tested here, not the board's speed
        )
    )
    assert result.trials_run >= 4
    measured = [o for o in result.outcomes if o.best_seconds is not None]
    assert measured, "no candidate ran on the device"
    sessions_after = [sessions_served(lab, port) for _, port in lab.key_servers]
    assert all(after > before for before, after in zip(sessions_before, sessions_after, strict=True)), (
        f"measurements did not spread over both boards: sessions {sessions_before} -> {sessions_after}"
    )
    build = build_model(
        BuildConfig(
            model=ModelOptions(alpha=0.25, resolution=32), target=TargetOptions(name="rasp4b"), tuning_db=work, output=tmp_path / "m.tar"
        )
    )
    assert build.manifest["tuning"]["kernels_tuned"] >= len(measured)


@pytest.mark.faults("fault")
def test_device_lost_mid_tune_keeps_every_record(lab, tmp_path, fault_ledger):
    victim, _ = lab.server("victim")
    wait_for_servers(lab.tracker, "victim", 1, timeout=240, processes=[victim])
    work = tmp_path / "db"
    config = TuneConfig(
        model=ModelOptions(alpha=0.25, resolution=32),
        target=TargetOptions(name="rasp4b"),
        rpc=RpcOptions(tracker=f"{lab.tracker[0]}:{lab.tracker[1]}", key="victim"),
        trials=60,
        tasks="pointwise",
        work_dir=work,
        timeout=60,
        allow_emulated=True,
    )

    def kill_after_first_records():
        deadline = time.time() + 600
        while time.time() < deadline:
            path = work / RECORD_FILE
            if path.exists() and path.read_text().count("\n") >= 2:
                stop(victim)
                return
            time.sleep(0.5)

    killer = threading.Thread(target=kill_after_first_records, daemon=True)
    killer.start()
    with pytest.raises(RpcError, match=r"no device is registered under key 'victim' .* any more; stopped after \d+ trials"):
        tune_model(config)
    killer.join(timeout=5)
    written = (work / RECORD_FILE).read_text().count("\n")
    kept = open_tuning_database(work).database.get_all_tuning_records()
    fault_ledger.count_records(written, len(kept))
    assert len(kept) == written >= 2  # what was measured before the device died is all there
    assert sum(1 for r in kept if max(float(s) for s in r.run_secs) < 1e9) >= 2


def test_sweep_of_two_models_measured_on_the_emulated_board(lab, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--target", "rasp4b", "--alphas", "0.25", "--resolutions", "64,32", "--out", str(out)]
    code = main([*args, "--repeat", "1", "--number", "1", *tracker_args(lab)])
    assert code == 0, capsys.readouterr().err[-2000:]
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["alpha"], r["resolution"]) for r in rows] == [(0.25, 64), (0.25, 32)]
    assert all(r["verification"] == "passed on the target" and r["latency_median_ms"] > 0 for r in rows)
    assert (out / "report.md").read_text().startswith("# MobileNet v1 α × resolution sweep on `rasp4b`")


def test_a_tflite_file_to_a_benchmark_on_the_board(lab, tmp_path, capsys):
    """The README's flow for a user's model: a Keras MobileNet exported to .tflite is cross-built
    for the Pi, checked against LiteRT's output on the board, benchmarked and run on a photo."""
    pytest.importorskip("tensorflow", reason="exporting the test model needs tensorflow-cpu (the test extra)")
    pytest.importorskip("ai_edge_litert", reason="the .tflite reference needs ai-edge-litert (the tflite extra)")
    from PIL import Image

    from tests.compiler.tflite_models import keras_mobilenet_tflite

    model = keras_mobilenet_tflite(tmp_path / "mobilenet.tflite", softmax=True)
    assert main(["build", "--model", str(model), "--target", "rasp4b", "-o", str(tmp_path / "pi.tar")]) == 0
    code = main(["bench", str(tmp_path / "pi.tar"), *tracker_args(lab), "--repeat", "2", "--number", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "mobilenet on rasp4b" in out, out
    Image.new("RGB", (100, 80), (30, 120, 200)).save(tmp_path / "photo.jpg")
    assert main(["run", str(tmp_path / "pi.tar"), "--image", str(tmp_path / "photo.jpg"), *tracker_args(lab)]) == 0
    assert "photo.jpg: top-5 classes" in capsys.readouterr().out


@pytest.mark.parametrize(
    "target, cpu, instruction",
    [("rasp4b", "cortex-a72", "smlal"), ("rasp5", "cortex-a76", "sdot")],  # A72 has no dotprod: widening MACs
)
def test_int8_builds_verify_on_their_emulated_board(lab, tmp_path, capsys, target, cpu, instruction):
    """The int8 module cross-built for the board gives, on the emulated board's CPU, the output
    of the NumPy integer reference (to ±1 quantum of the int8 logits), and its library uses the
    board's integer multiply-accumulate: NEON ``smlal`` on the Pi 4, the dot product ``sdot`` on
    the Pi 5 (schedules/cpu/conv_dot.py). Numerics only: emulated timings say nothing about the
    board."""
    server, port = lab.server(None, register=False, cpu=cpu)
    wait_until_listening(port, server, timeout=120)
    config = BuildConfig(
        model=ModelOptions(alpha=0.25, resolution=96, quantize="int8"), target=TargetOptions(name=target), output=tmp_path / "q.tar"
    )
    assert build_model(config).verification["status"] == "skipped"  # not on this machine: on the board
    code = main(["run", str(tmp_path / "q.tar"), "--rpc-host", "127.0.0.1", "--rpc-port", str(port)])
    out = capsys.readouterr().out
    assert code == 0 and "matches the reference output" in out, out
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        pytest.skip("no aarch64-linux-gnu-objdump to read the library's instructions with")
    with tarfile.open(tmp_path / "q.tar") as tar:
        (tmp_path / "model.so").write_bytes(tar.extractfile("model.so").read())
    listing = subprocess.run([objdump, "-d", str(tmp_path / "model.so")], capture_output=True, text=True, timeout=120, check=True).stdout
    assert len(re.findall(rf"\t{instruction}\t", listing)) >= 13, f"no {instruction} in the {target} library"
    if target == "rasp4b":
        assert "\tsdot\t" not in listing  # the Cortex-A72 would fault on it


def test_an_int8_tflite_file_verifies_on_the_emulated_pi_5(lab, tmp_path, capsys):
    """A full-integer Keras .tflite cross-built for the Pi 5 runs on its int8 kernels there (the
    dot product's int8 operands: the file's zero points shifted by 128) and gives LiteRT's output,
    stored at build time, on the emulated Cortex-A76."""
    pytest.importorskip("tensorflow", reason="exporting the test model needs tensorflow-cpu (the test extra)")
    pytest.importorskip("ai_edge_litert", reason="the .tflite reference needs ai-edge-litert (the tflite extra)")
    from tests.compiler.tflite_models import keras_mobilenet_tflite

    server, port = lab.server(None, register=False, cpu="cortex-a76")
    wait_until_listening(port, server, timeout=120)
    model = keras_mobilenet_tflite(tmp_path / "int8.tflite", resolution=32, int8=True)
    result = build_model(BuildConfig(model=ModelOptions(model_file=model), target=TargetOptions(name="rasp5"), output=tmp_path / "q.tar"))
    assert result.manifest["model"]["dense_input"] == "int8" and result.manifest["reference"]["framework"] == "litert"
    code = main(["run", str(tmp_path / "q.tar"), "--rpc-host", "127.0.0.1", "--rpc-port", str(port)])
    out = capsys.readouterr().out
    assert code == 0 and "matches the reference output" in out, out


@pytest.mark.faults("bad_input")
def test_tuning_on_the_emulated_board_is_refused_unless_asked(lab, tmp_path, capsys):
    work = str(tmp_path / "db")
    args = [
        "tune",
        "-a",
        "0.25",
        "-r",
        "32",
        "--target",
        "rasp4b",
        "--trials",
        "2",
        "--tasks",
        "pointwise",
        "--work-dir",
        work,
        *tracker_args(lab),
    ]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 3, err
    assert "runs on this machine" in err and "timings are qemu's, not the board's" in err and "--allow-emulated" in err
    assert not (tmp_path / "db" / RECORD_FILE).exists() or (tmp_path / "db" / RECORD_FILE).read_text() == ""  # nothing tuned
