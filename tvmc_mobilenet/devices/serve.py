"""The foreground lifecycle of TVM's RPC tracker and of the emulated device's RPC server.

``tvmc-mobilenet device tracker`` and ``device emulate`` each run one server in the foreground.
The server runs in a session of its own (so that stopping it stops all it started, by process
group), which also means that nothing sent to the command reaches it: a terminal's SIGHUP, or the
SIGTERM of ``kill`` or of a service manager, would end the command and leave the server running,
orphaned. :func:`serve_tracker` and :func:`serve_emulated_device` own the whole lifecycle instead:

1. start the server (and, for the device, wait, bounded, until it has registered with the tracker);
2. wait until a SIGINT, SIGTERM or SIGHUP arrives, or the server exits on its own;
3. in every case, a signal during start-up included, stop the server and its whole process group
   by PID (:func:`tvmc_mobilenet.devices.emulated.stop`).

While one of them runs it owns the three signals (from the main thread only; elsewhere it cannot,
and only the server's own exit ends it); the previous handlers are put back when it returns. A
signal the caller ignores (``nohup`` ignores SIGHUP) stays ignored. A server that exits on its own
is an :class:`~tvmc_mobilenet.errors.RpcError`; a stop by signal is a :class:`ServeOutcome`.
Nothing here imports click: the messages go to ``log``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tvmc_mobilenet.devices.emulated import (
    DEFAULT_CPU,
    peek_returncode,
    prepare_sysroot,
    start_server,
    start_tracker,
    stop,
    wait_for_servers,
)
from tvmc_mobilenet.errors import RpcError

#: The signals that stop a foreground server: Ctrl-C, ``kill`` / a service manager, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
T = TypeVar("T")


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class ServeOutcome:
    """How a foreground server ended: a stop signal arrived, and it and its group were stopped.

    ``what`` names the server, ``pid`` is its process (None: the signal came before it was
    started), ``signal`` the signal received, and ``returncode`` the server's exit status once
    stopped (negative: the signal that ended it).
    """

    what: str
    pid: int | None
    signal: int
    returncode: int | None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal).name

    @property
    def exit_code(self) -> int:
        """The command's exit status: 130 after Ctrl-C (SIGINT), 0 after SIGTERM or SIGHUP.

        Ctrl-C is a person interrupting a command: 130 is what the shell reports for it, and what
        the CLI returns for every other interrupted command. SIGTERM and SIGHUP are how a service
        manager, ``kill`` or a closing session ends a server it owns; the server was stopped as
        asked, so that is a success. systemd, the service manager that matters here, counts only
        exit status 0 (or death by the signal itself) as a clean stop: 143 or 129 would leave a
        ``systemctl stop``-ed unit marked "failed". A server that dies on its own is not an
        outcome but an RpcError (exit status 6).
        """
        return 128 + signal.SIGINT if self.signal == signal.SIGINT else 0

    def describe(self) -> str:
        if self.pid is None:
            return f"{self.signal_name}: stopped before the {self.what} was started"
        return f"{self.signal_name}: stopped the {self.what} (pid {self.pid}) and all it started"


def serve_tracker(
    host: str = "127.0.0.1",
    port: int = 9190,
    *,
    log: Callable[[str], None] = _quiet,
    ready_timeout: float = 60.0,
    log_path: Path | None = None,
) -> ServeOutcome:
    """Run TVM's RPC tracker on ``host:port`` until SIGINT, SIGTERM or SIGHUP; then stop it.

    Waits (at most ``ready_timeout`` s) until the tracker accepts connections, says so through
    ``log``, then waits for a stop signal. Raises RpcError when the port is taken, when the tracker
    does not listen in time, or when it exits on its own; the tracker is stopped in every case.
    """
    what = "RPC tracker"
    _refuse_taken_port(host, port, what)

    def ready(process: subprocess.Popen) -> None:
        _wait_listening(host, port, process, ready_timeout, what)
        log(f"{what} on {host}:{port} (pid {process.pid}); Ctrl-C, SIGTERM or SIGHUP stops it")

    return _serve(what, lambda: None, lambda _: start_tracker(host, port, log_path=log_path), ready)


def serve_emulated_device(
    key: str = "rasp4b",
    tracker: tuple[str, int] = ("127.0.0.1", 9190),
    *,
    host: str = "127.0.0.1",
    port: int = 9090,
    cpu: str = DEFAULT_CPU,
    root: Path | None = None,
    register_timeout: float = 120.0,
    log: Callable[[str], None] = _quiet,
    log_path: Path | None = None,
) -> ServeOutcome:
    """Run TVM's RPC server on the emulated aarch64 device, registered with ``tracker`` under
    ``key``, until SIGINT, SIGTERM or SIGHUP; then stop it (qemu and all it started).

    Builds the device first if ``root`` (default: the user cache) does not hold it yet, then waits
    (at most ``register_timeout`` s) until the server has registered, and says so through ``log``.
    Raises RpcError when the port is taken, when the server does not register in time, or when it
    exits on its own; TargetError when the device cannot be built. The server is stopped in every
    case, a signal during the build or the registration included.
    """
    what = "emulated device"
    _refuse_taken_port(host, port, "emulated device's RPC server")

    def start(sysroot) -> subprocess.Popen:
        return start_server(sysroot, key, tracker, host=host, port=port, cpu=cpu, log_path=log_path)

    def ready(process: subprocess.Popen) -> None:
        log(f"emulated {cpu} device (pid {process.pid}) starting under qemu; registering as {key!r}…")
        wait_for_servers(tracker, key, 1, timeout=register_timeout, processes=[process])
        log(f"registered with the tracker at {tracker[0]}:{tracker[1]}; Ctrl-C, SIGTERM or SIGHUP stops it")

    return _serve(what, lambda: prepare_sysroot(root, log=log), start, ready)


class _Stop(BaseException):
    """A stop signal, raised (at most once) from the handler into whatever the main thread runs.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """While active, SIGINT/SIGTERM/SIGHUP are recorded; while also armed, the first raises _Stop.

    Disarmed while the server is being started (so that a Popen object can never be lost between
    the fork and the assignment) and while it is being stopped (so that a second Ctrl-C cannot cut
    the stop short); a signal recorded while disarmed is raised by the next :meth:`arm`.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._armed = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # e.g. SIGHUP under nohup: the caller asked for the command to outlive it
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc) -> None:
        self._armed = False
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, _frame) -> None:
        if self.received is None:
            self.received = signum
        if self._armed:
            self._armed = False
            raise _Stop(self.received)

    def arm(self) -> None:
        if self.received is not None:
            raise _Stop(self.received)
        self._armed = True

    def disarm(self) -> None:
        self._armed = False


def _serve(
    what: str,
    prepare: Callable[[], T],
    start: Callable[[T], subprocess.Popen],
    ready: Callable[[subprocess.Popen], None],
) -> ServeOutcome:
    """prepare → start → ready → wait for a signal or the server's exit; the server stopped always."""
    process: subprocess.Popen | None = None
    stopped_by: int | None = None
    with _StopSignals() as signals:
        try:
            signals.arm()
            prepared = prepare()
            signals.disarm()
            process = start(prepared)
            signals.arm()
            ready(process)
            _wait_for_exit(process)
        except _Stop as exc:
            stopped_by = exc.signum
        finally:
            signals.disarm()
            if process is not None:
                stop(process)
    if stopped_by is not None:
        pid, returncode = (process.pid, process.returncode) if process is not None else (None, None)
        return ServeOutcome(what, pid, stopped_by, returncode)
    raise RpcError(f"the {what} (pid {process.pid}) ended on its own ({_ended(process.returncode)}); what it started was stopped too")


def _wait_for_exit(process: subprocess.Popen) -> None:
    """Block until ``process`` exits, without reaping it (see emulated.peek_returncode)."""
    if not hasattr(os, "waitid"):
        process.wait()
        return
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # a stop signal interrupts it with _Stop
    except ChildProcessError:
        process.poll()


def _ended(returncode: int | None) -> str:
    """``exit code 1``, ``killed by SIGKILL``: how a process ended, for a message."""
    if returncode is None:
        return "exit status unknown"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _connect_host(host: str) -> str:
    """Where to reach a server listening on ``host`` from this machine (a wildcard: loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def accepts_connections(host: str, port: int) -> bool:
    """Whether a server listens on ``host:port`` (a wildcard host: reached through loopback).

    A connection to a loopback port that nothing listens on can still succeed: when the kernel
    picks that same port as the connection's own source port, TCP's simultaneous open connects the
    socket to itself (ports handed out by ``bind(port 0)`` are in that range). Such a connection
    counts as no server."""
    try:
        with socket.create_connection((_connect_host(host), port), timeout=2) as connection:
            return connection.getsockname() != connection.getpeername()
    except OSError:
        return False


def _refuse_taken_port(host: str, port: int, what: str) -> None:
    if accepts_connections(host, port):
        raise RpcError(f"cannot start the {what} on {host}:{port}: something listens there already; choose another port")


def _wait_listening(host: str, port: int, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not accepts_connections(host, port):
        code = peek_returncode(process)
        if code is not None:
            raise RpcError(f"the {what} (pid {process.pid}) ended ({_ended(code)}) before listening on {host}:{port}")
        if time.monotonic() > deadline:
            raise RpcError(f"the {what} (pid {process.pid}) did not listen on {host}:{port} within {timeout:g} s")
        time.sleep(0.2)
