"""Remote devices over TVM's own RPC: a tracker (``python -m tvm.exec.rpc_tracker``) and servers
(``python -m tvm.exec.rpc_server --tracker HOST:9190 --key rasp4b``) on the boards.

TVM's client blocks without limit in several places: connecting to a tracker that is not there
retries for a minute, a request for a key that no server serves waits forever, and a call to a
server that went away silently never returns. Every step here has a deadline instead
(:func:`bounded`), and each failure is an :class:`RpcError` that says what to check.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tvmc_mobilenet.errors import BadInputError, RpcError, message_line
from tvmc_mobilenet.options import RpcOptions

DEFAULT_TRACKER_PORT = 9190
T = TypeVar("T")


@dataclass(frozen=True)
class RpcTarget:
    """Where a remote device is: through a tracker and a key, or a server's address."""

    tracker_host: str | None = None
    tracker_port: int = DEFAULT_TRACKER_PORT
    key: str | None = None
    host: str | None = None
    port: int | None = None
    #: Seconds to wait for a tracker, a server, or a free device.
    connect_timeout: float = 30.0
    #: Seconds one remote operation (upload, load, a timing run) may take.
    call_timeout: float = 600.0

    @classmethod
    def from_options(cls, options: RpcOptions, *, call_timeout: float | None = None, connect_timeout: float = 30.0) -> RpcTarget | None:
        """Check the command's RPC options; None when none was given (run here). ``call_timeout``
        defaults to the options' own ``timeout``."""
        if not options.given:
            return None
        tracker, key, host, port = options.tracker, options.key, options.host, options.port
        call_timeout = options.timeout if call_timeout is None else call_timeout
        if tracker is not None and (host is not None or port is not None):
            raise BadInputError("give either --rpc-tracker (with --rpc-key) or --rpc-host/--rpc-port, not both")
        if tracker is not None:
            if not key:
                raise BadInputError("--rpc-tracker needs --rpc-key: the key the devices registered under (e.g. rasp4b)")
            tracker_host, tracker_port = parse_address(tracker, DEFAULT_TRACKER_PORT, "--rpc-tracker")
            return cls(tracker_host, tracker_port, key, connect_timeout=connect_timeout, call_timeout=call_timeout)
        if host is None or port is None:
            if key is not None and host is None:
                raise BadInputError("--rpc-key needs --rpc-tracker HOST[:PORT]")
            raise BadInputError("--rpc-host and --rpc-port go together: the address of a TVM RPC server")
        if not 0 < port < 65536:
            raise BadInputError(f"--rpc-port must be a TCP port (1-65535), got {port}")
        return cls(host=host, port=port, key=key, connect_timeout=connect_timeout, call_timeout=call_timeout)

    @property
    def via_tracker(self) -> bool:
        return self.tracker_host is not None

    def describe(self) -> str:
        if self.via_tracker:
            return f"key {self.key!r} at tracker {self.tracker_host}:{self.tracker_port}"
        return f"server {self.host}:{self.port}"


def parse_address(text: str, default_port: int, option: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    if not host:
        raise BadInputError(f"{option} must be HOST or HOST:PORT, got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise BadInputError(f"{option} must be HOST or HOST:PORT with a numeric port, got {text!r}") from None
    if not 0 < port < 65536:
        raise BadInputError(f"{option}: port must be 1-65535, got {port}")
    return host, port


def bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` with a deadline; a call that does not return in time becomes an RpcError.

    The call runs in a daemon thread, so a socket that never answers cannot hold the process.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name=f"rpc: {what}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RpcError(f"{what}: no answer within {timeout:g} s; is the device still up and reachable?")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, RpcError):
            raise error
        raise RpcError(f"{what} failed: {message_line(error)}") from None
    return outcome["value"]


def check_reachable(host: str, port: int, what: str, timeout: float) -> None:
    """A plain TCP connect first, for a clear message instead of TVM's minute of retries."""
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 10.0)):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RpcError(f"cannot reach the {what} at {host}:{port} ({reason}); is it running and is the address right?") from None


def tracker_summary(host: str, port: int, timeout: float) -> dict[str, Any]:
    """The tracker's view: registered servers and, per key, free and pending counts."""
    import tvm.rpc

    check_reachable(host, port, "RPC tracker", timeout)

    def query() -> dict[str, Any]:
        tracker = tvm.rpc.connect_tracker(host, port)
        try:
            return dict(tracker.summary())
        finally:
            tracker.close()

    return bounded(query, timeout, f"querying the RPC tracker at {host}:{port}")


def servers_for_key(summary: dict[str, Any], key: str) -> int:
    """How many servers are registered under ``key`` (tracker entries look like ``server:rasp4b``)."""
    return sum(1 for info in summary.get("server_info", []) if str(info.get("key", "")).split(":", 1)[-1] == key)


def runs_on_this_machine(session, timeout: float) -> bool:
    """Whether the RPC server behind ``session`` runs on this machine: a file it writes into its
    workspace shows up on this machine's disk. A board's server answers no; an emulated board's
    (qemu user mode shares the host's file system) or any server started here answers yes."""
    import secrets

    token = secrets.token_hex(16)
    name = f"tvmc_mobilenet_probe_{token}"
    bounded(lambda: session.upload(bytearray(token.encode()), name), timeout, "writing a probe file on the device")
    try:
        remote_path = bounded(lambda: session.get_function("tvm.rpc.server.workpath")(name), timeout, "asking for the device's workspace")
        local = Path(str(remote_path))
        return local.is_file() and local.read_bytes() == token.encode()
    finally:
        bounded(lambda: session.remove(name), timeout, "removing the probe file")


def open_session(rpc: RpcTarget):
    """A connected ``tvm.rpc.RPCSession``, or an RpcError that says what is missing."""
    import tvm.rpc

    if not rpc.via_tracker:
        check_reachable(rpc.host, rpc.port, "RPC server", rpc.connect_timeout)
        return bounded(
            lambda: tvm.rpc.connect(rpc.host, rpc.port, key=rpc.key or "", session_timeout=0),
            rpc.connect_timeout,
            f"connecting to the RPC server at {rpc.host}:{rpc.port}",
        )
    summary = tracker_summary(rpc.tracker_host, rpc.tracker_port, rpc.connect_timeout)
    if servers_for_key(summary, rpc.key) == 0:
        keys = sorted({str(i.get("key", "")).split(":", 1)[-1] for i in summary.get("server_info", [])})
        known = ", ".join(keys) if keys else "none"
        raise RpcError(
            f"no device is registered under key {rpc.key!r} at tracker {rpc.tracker_host}:{rpc.tracker_port} "
            f"(keys registered: {known}); start one with: python -m tvm.exec.rpc_server "
            f"--tracker {rpc.tracker_host}:{rpc.tracker_port} --key {rpc.key}"
        )
    tracker = bounded(lambda: tvm.rpc.connect_tracker(rpc.tracker_host, rpc.tracker_port), rpc.connect_timeout, "connecting to the tracker")
    return bounded(
        lambda: tracker.request(rpc.key, priority=1, session_timeout=0, max_retry=2),
        rpc.connect_timeout,
        f"waiting for a free device under key {rpc.key!r} (all busy?)",
    )
