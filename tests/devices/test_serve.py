"""Foreground servers end with their command: ``device tracker`` and ``device emulate`` stopped by
SIGTERM, SIGHUP or Ctrl-C leave nothing they started running (the tracker, qemu, their workers).

The commands run as a user runs them (the console script in a subprocess); each test notes every
process the command started before it sends the signal, and checks afterwards that all are gone
and that their ports no longer answer. Everything listens on 127.0.0.1; every wait is bounded;
whatever a test started is killed by PID at the end, whatever happened.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import EMULATOR_DIR, accepts_connections, free_port, wait_until_listening
from tvmc_mobilenet.cli import main
from tvmc_mobilenet.devices.emulated import prepare_sysroot, start_tracker, stop
from tvmc_mobilenet.devices.serve import ServeOutcome, serve_tracker
from tvmc_mobilenet.errors import RpcError
from tvmc_mobilenet.runtime.rpc import servers_for_key, tracker_summary

SCRIPT = str(Path(sys.executable).parent / "tvmc-mobilenet")
#: The signal, and the exit status the command promises for it (ServeOutcome.exit_code).
STOPS = [pytest.param(signal.SIGTERM, 0, id="SIGTERM"), pytest.param(signal.SIGHUP, 0, id="SIGHUP"),
         pytest.param(signal.SIGINT, 130, id="SIGINT")]  # fmt: skip


class Command:
    """``tvmc-mobilenet ARGS`` in a subprocess, its stderr in a file that the test reads as it grows."""

    def __init__(self, args: list[str], tmp_path: Path):
        self.stderr_path = tmp_path / f"stderr-{len(list(tmp_path.iterdir()))}.txt"
        with open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen([SCRIPT, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.started: list[psutil.Process] = []

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.stderr)
            if found:
                return found
            assert self.process.poll() is None, (
                f"the command exited ({self.process.returncode}) before printing {pattern!r}:\n{self.stderr}"
            )
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout:g} s:\n{self.stderr}"
            time.sleep(0.2)

    def note_children(self) -> list[psutil.Process]:
        """Every process the command has started so far (and they started), noted before the signal."""
        self.started = psutil.Process(self.process.pid).children(recursive=True)
        return self.started

    def kill_everything(self) -> None:
        targets = list(self.started)
        if self.process.poll() is None:  # a failed test: the command and all it has started by now
            try:
                targets += [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for p in targets:
            try:
                p.kill()  # psutil refuses a PID that names another process by now
            except psutil.NoSuchProcess:
                pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)


def alive(p: psutil.Process) -> bool:
    """Still running (a zombie, dead but not yet reaped by whoever adopted it, counts as gone)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def still_running(processes: list[psutil.Process], timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in processes if alive(p)]
        if not left or time.monotonic() > deadline:
            return [f"{p.pid}: {' '.join(p.cmdline())[:200]}" for p in left if alive(p)]
        time.sleep(0.1)


@pytest.fixture
def command(tmp_path):
    commands: list[Command] = []

    def run(*args: str) -> Command:
        commands.append(Command(list(args), tmp_path))
        return commands[-1]

    yield run
    for c in commands:
        c.kill_everything()


# ---------------------------------------------------------------------------------- the tracker


@pytest.mark.rpc
@pytest.mark.faults("fault")
@pytest.mark.parametrize("sig, exit_code", STOPS)
def test_tracker_stops_with_its_command(command, sig, exit_code):
    port = free_port()
    cmd = command("device", "tracker", "--port", str(port))
    wait_until_listening(port, cmd.process, timeout=60)
    pid = int(cmd.wait_for_line(rf"RPC tracker on 127\.0\.0\.1:{port} \(pid (\d+)\)", 30).group(1))
    started = cmd.note_children()
    assert pid in [p.pid for p in started]

    cmd.process.send_signal(sig)
    assert cmd.process.wait(timeout=60) == exit_code, cmd.stderr
    assert still_running(started) == [], f"left running after {sig.name}"
    assert not accepts_connections("127.0.0.1", port)
    assert f"{sig.name}: stopped the RPC tracker (pid {pid}) and all it started" in cmd.stderr
    assert "Traceback" not in cmd.stderr and "error:" not in cmd.stderr


@pytest.mark.rpc
@pytest.mark.faults("fault")
def test_tracker_that_dies_on_its_own_is_a_one_line_error_and_leaves_nothing(command):
    port = free_port()
    cmd = command("device", "tracker", "--port", str(port))
    wait_until_listening(port, cmd.process, timeout=60)
    pid = int(cmd.wait_for_line(r"\(pid (\d+)\)", 30).group(1))
    started = cmd.note_children()
    os.kill(pid, signal.SIGKILL)  # the tracker alone; its worker is left to the command to clear

    assert cmd.process.wait(timeout=60) == RpcError.exit_code, cmd.stderr
    errors = [line for line in cmd.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the RPC tracker (pid {pid}) ended on its own (killed by SIGKILL); what it started was stopped too"]
    assert "Traceback" not in cmd.stderr
    assert still_running(started) == []
    assert not accepts_connections("127.0.0.1", port)


def test_a_socket_connected_to_itself_is_no_server(monkeypatch):
    """A loopback connection whose source port the kernel picks equal to its destination port
    connects to itself (TCP simultaneous open) with nothing listening: that once made a test see
    a killed tracker's port still open. Forced here by binding the source port."""
    import socket

    real = socket.create_connection
    port = free_port()
    with real(("127.0.0.1", port), timeout=2, source_address=("127.0.0.1", port)) as itself:
        assert itself.getsockname() == itself.getpeername()  # the kernel does connect it
    connected = []

    def to_itself(address, timeout=None):
        connection = real(address, timeout=timeout, source_address=address)
        connected.append(connection.getsockname() == connection.getpeername())
        return connection

    monkeypatch.setattr(socket, "create_connection", to_itself)
    port = free_port()  # the first one lingers in TIME_WAIT
    assert not accepts_connections("127.0.0.1", port)
    assert connected == [True]


@pytest.mark.rpc
@pytest.mark.faults("bad_input")
def test_tracker_on_a_taken_port_is_refused_before_anything_starts(capsys):
    port = free_port()
    squatter = start_tracker("127.0.0.1", port)
    try:
        wait_until_listening(port, squatter, timeout=60)
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        code = main(["device", "tracker", "--port", str(port)])
        err = capsys.readouterr().err
        assert code == RpcError.exit_code
        assert (
            err.strip() == f"error: cannot start the RPC tracker on 127.0.0.1:{port}: something listens there already; choose another port"
        )
        assert {p.pid for p in psutil.Process().children(recursive=True)} == before
    finally:
        stop(squatter)


def _send_when(condition, sig: int, timeout: float = 60.0) -> threading.Thread:
    """From a thread: once ``condition()`` holds (or ``timeout`` passed), send ``sig`` to this process."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), sig)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def guarded_signals():
    """A harmless SIGTERM handler and SIGHUP ignored (as under nohup) while a test signals itself."""
    received: list[int] = []

    def sentinel(signum, _frame):
        received.append(signum)

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    signal.signal(signal.SIGTERM, sentinel)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield sentinel, received
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _tracker_children(but=()) -> list[psutil.Process]:
    """The trackers this process has started, bar those in ``but``."""
    return [p for p in psutil.Process().children() if "tvm.exec.rpc_tracker" in " ".join(p.cmdline()) and p not in but]


@pytest.mark.rpc
@pytest.mark.faults("fault")
def test_serve_tracker_returns_on_sigterm_keeps_an_ignored_sighup_ignored_and_restores_handlers(guarded_signals):
    sentinel, received = guarded_signals
    sigint_before = signal.getsignal(signal.SIGINT)
    port = free_port()
    lines: list[str] = []
    stopped: list[psutil.Process] = []
    others = _tracker_children()

    def listening_and_hup_survived() -> bool:
        if not accepts_connections("127.0.0.1", port):
            return False
        if not stopped:
            stopped.extend(_tracker_children(but=others))
            os.kill(os.getpid(), signal.SIGHUP)  # ignored by the caller, so ignored by serve_tracker too
            time.sleep(1.0)
        return accepts_connections("127.0.0.1", port)

    thread = _send_when(listening_and_hup_survived, signal.SIGTERM)
    try:
        outcome = serve_tracker("127.0.0.1", port, log=lines.append)
    finally:
        thread.join(timeout=70)
        for p in stopped:
            if alive(p):
                p.kill()
    assert isinstance(outcome, ServeOutcome)
    assert (outcome.signal, outcome.signal_name, outcome.exit_code) == (signal.SIGTERM, "SIGTERM", 0)
    assert lines == [f"RPC tracker on 127.0.0.1:{port} (pid {outcome.pid}); Ctrl-C, SIGTERM or SIGHUP stops it"]
    assert [p.pid for p in stopped] == [outcome.pid] and outcome.returncode is not None
    assert still_running(stopped) == [] and not accepts_connections("127.0.0.1", port)
    assert signal.getsignal(signal.SIGTERM) is sentinel and received == []  # the SIGTERM was serve_tracker's
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is sigint_before


@pytest.mark.rpc
@pytest.mark.faults("fault")
def test_serve_tracker_stopped_while_starting_stops_the_tracker(guarded_signals):
    port = free_port()
    seen: list[psutil.Process] = []
    others = _tracker_children()

    def tracker_started() -> bool:
        seen.extend(_tracker_children(but=others))
        return bool(seen)

    thread = _send_when(tracker_started, signal.SIGTERM)
    try:
        outcome = serve_tracker("127.0.0.1", port, log=lambda m: pytest.fail(f"reported ready: {m}"))
    finally:
        thread.join(timeout=70)
        for p in seen:
            if alive(p):
                p.kill()
    assert seen and outcome.pid == seen[0].pid and outcome.signal == signal.SIGTERM
    assert still_running(seen) == [] and not accepts_connections("127.0.0.1", port)


def test_exit_codes():
    outcome = ServeOutcome("RPC tracker", 42, signal.SIGINT, -15)
    assert outcome.exit_code == 130 and outcome.describe() == "SIGINT: stopped the RPC tracker (pid 42) and all it started"
    assert ServeOutcome("x", 1, signal.SIGTERM, 0).exit_code == ServeOutcome("x", 1, signal.SIGHUP, 0).exit_code == 0
    assert ServeOutcome("emulated device", None, signal.SIGHUP, None).describe() == "SIGHUP: stopped before the emulated device was started"


# ------------------------------------------------------------------------- the emulated device


@pytest.fixture(scope="module")
def tracker():
    """The tracker the emulated devices register with, on loopback, stopped by its PID."""
    prepare_sysroot(EMULATOR_DIR)  # built once (minutes), before any timed wait
    port = free_port()
    process = start_tracker("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                tracker_summary("127.0.0.1", port, timeout=5)
                break
            except RpcError:
                assert process.poll() is None and time.monotonic() < deadline, "the test's tracker did not start"
                time.sleep(0.2)
        yield ("127.0.0.1", port)
    finally:
        stop(process)


def registered(tracker, key: str) -> int:
    return servers_for_key(tracker_summary(*tracker, timeout=10), key)


def wait_unregistered(tracker, key: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := registered(tracker, key)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return count


def emulate(command, tracker, key: str) -> tuple[Command, int]:
    port = free_port()
    cmd = command(
        "device", "emulate", "--key", key, "--tracker", f"{tracker[0]}:{tracker[1]}", "--port", str(port), "--dir", str(EMULATOR_DIR)
    )
    return cmd, port


@pytest.mark.emulated
@pytest.mark.rpc
@pytest.mark.faults("fault")
@pytest.mark.parametrize("sig, exit_code", STOPS)
def test_emulated_device_stops_with_its_command(command, tracker, sig, exit_code):
    key = f"stop-{sig.name.lower()}"
    cmd, port = emulate(command, tracker, key)
    pid = int(cmd.wait_for_line(r"device \(pid (\d+)\) starting under qemu", 60).group(1))
    cmd.wait_for_line(rf"registered with the tracker at 127\.0\.0\.1:{tracker[1]}", 240)
    started = cmd.note_children()
    assert pid in [p.pid for p in started] and any("qemu-aarch64" in " ".join(p.cmdline()) for p in started)
    assert registered(tracker, key) == 1 and accepts_connections("127.0.0.1", port)

    cmd.process.send_signal(sig)
    assert cmd.process.wait(timeout=60) == exit_code, cmd.stderr
    assert still_running(started) == [], f"left running after {sig.name}"
    assert not accepts_connections("127.0.0.1", port)
    assert wait_unregistered(tracker, key) == 0
    assert f"{sig.name}: stopped the emulated device (pid {pid}) and all it started" in cmd.stderr
    assert "Traceback" not in cmd.stderr and "error:" not in cmd.stderr


@pytest.mark.emulated
@pytest.mark.rpc
@pytest.mark.faults("fault")
def test_emulated_device_stopped_while_registering_leaves_nothing(command, tracker):
    key = "stop-while-registering"
    cmd, port = emulate(command, tracker, key)
    pid = int(cmd.wait_for_line(r"device \(pid (\d+)\) starting under qemu", 60).group(1))
    started = cmd.note_children()
    assert pid in [p.pid for p in started]
    assert "registered with the tracker" not in cmd.stderr  # qemu takes seconds to start CPython

    cmd.process.send_signal(signal.SIGTERM)
    assert cmd.process.wait(timeout=60) == 0, cmd.stderr
    assert still_running(started) == []
    assert f"SIGTERM: stopped the emulated device (pid {pid}) and all it started" in cmd.stderr
    time.sleep(2)  # had anything survived, it would register now
    assert registered(tracker, key) == 0 and not accepts_connections("127.0.0.1", port)
