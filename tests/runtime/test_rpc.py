"""Remote-device plumbing without a device: options, deadlines, tracker errors."""

import threading
import time

import pytest

from tvmc_mobilenet.options import RpcOptions
from tvmc_mobilenet.devices.emulated import start_tracker, stop, wait_for_servers
from tvmc_mobilenet.errors import BadInputError, RpcError
from tvmc_mobilenet.runtime.rpc import RpcTarget, bounded, open_session, parse_address, tracker_summary

from tests.helpers import free_port, start_local_rpc_server, wait_until_listening


@pytest.fixture(scope="module")
def tracker():
    """TVM's stock tracker on loopback, stopped by its PID."""
    port = free_port()
    process = start_tracker("127.0.0.1", port)
    deadline = time.time() + 30
    while True:
        try:
            tracker_summary("127.0.0.1", port, timeout=5)
            break
        except RpcError:
            if time.time() > deadline or process.poll() is not None:
                stop(process)
                raise
            time.sleep(0.2)
    yield ("127.0.0.1", port)
    stop(process)
    assert process.poll() is not None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tracker="127.0.0.1:9190"), r"--rpc-tracker needs --rpc-key"),
        (dict(tracker="h:9190", key="k", host="h", port=1), r"either --rpc-tracker .* or --rpc-host/--rpc-port, not both"),
        (dict(host="h"), r"--rpc-host and --rpc-port go together"),
        (dict(key="rasp4b"), r"--rpc-key needs --rpc-tracker"),
        (dict(tracker="h:port", key="k"), r"HOST:PORT with a numeric port"),
        (dict(tracker="h:70000", key="k"), r"port must be 1-65535"),
        (dict(host="h", port=0), r"--rpc-port must be a TCP port"),
    ],
)
@pytest.mark.faults("bad_input")
def test_option_errors(kwargs, message):
    with pytest.raises(BadInputError, match=message):
        RpcTarget.from_options(RpcOptions(**kwargs))


def test_options():
    assert RpcTarget.from_options(RpcOptions()) is None
    rpc = RpcTarget.from_options(RpcOptions(tracker="10.0.0.2", key="rasp4b"))
    assert (rpc.tracker_host, rpc.tracker_port, rpc.key) == ("10.0.0.2", 9190, "rasp4b")
    assert rpc.describe() == "key 'rasp4b' at tracker 10.0.0.2:9190"
    direct = RpcTarget.from_options(RpcOptions(host="pi.local", port=9090))
    assert direct.describe() == "server pi.local:9090" and not direct.via_tracker
    assert parse_address("pi.local", 9190, "x") == ("pi.local", 9190)
    assert parse_address("10.0.0.2:9191", 9190, "x") == ("10.0.0.2", 9191)


@pytest.mark.faults("fault")
@pytest.mark.timeout(10)  # a hang would be the bug
def test_bounded_turns_a_hang_into_an_error():
    with pytest.raises(RpcError, match=r"waiting: no answer within 0.2 s"):
        bounded(lambda: time.sleep(30), 0.2, "waiting")
    assert bounded(lambda: 42, 1, "x") == 42
    with pytest.raises(RpcError, match=r"dividing failed: division by zero"):
        bounded(lambda: 1 / 0, 1, "dividing")


@pytest.mark.faults("fault")
@pytest.mark.timeout(30)  # TVM's own client retries for a minute
def test_unreachable_tracker_is_a_quick_clear_error():
    port = free_port()  # nothing listens there
    with pytest.raises(RpcError, match=rf"cannot reach the RPC tracker at 127.0.0.1:{port} .*is it running"):
        open_session(RpcTarget(tracker_host="127.0.0.1", tracker_port=port, key="rasp4b"))


@pytest.mark.faults("fault")
def test_unreachable_server_is_a_quick_clear_error():
    port = free_port()
    with pytest.raises(RpcError, match=rf"cannot reach the RPC server at 127.0.0.1:{port}"):
        open_session(RpcTarget(host="127.0.0.1", port=port))


@pytest.mark.faults("fault")
@pytest.mark.timeout(30)  # TVM's tracker would queue the request forever
def test_key_no_server_serves_is_an_error_not_a_hang(tracker):
    with pytest.raises(RpcError, match=r"no device is registered under key 'nobody' .*keys registered: none.*rpc_server"):
        open_session(RpcTarget(tracker_host=tracker[0], tracker_port=tracker[1], key="nobody"))


@pytest.mark.faults("fault")
def test_waiting_for_registration_is_bounded(tracker):
    with pytest.raises(RpcError, match=r"did not register with the tracker within 1 s \(0 of 1 registered\)"):
        wait_for_servers(tracker, "nobody", 1, timeout=1)


@pytest.mark.faults("fault")
def test_cli_reports_rpc_errors_in_one_line(capsys, tiny_artifact):
    from tvmc_mobilenet.cli import main

    port = free_port()
    code = main(["bench", str(tiny_artifact), "--rpc-tracker", f"127.0.0.1:{port}", "--rpc-key", "rasp4b"])
    err = capsys.readouterr().err
    assert code == 6
    assert err.strip().splitlines()[-1].startswith(f"error: cannot reach the RPC tracker at 127.0.0.1:{port}")


@pytest.mark.faults("fault")
@pytest.mark.timeout(120)  # far below the 600 s deadline of a step: the drop itself must end the bench
def test_server_killed_mid_bench_is_a_clear_error_within_the_timeout(capsys, tiny_artifact):
    """TVM's stock RPC server on this machine (loopback), killed while the benchmark runs."""
    from tvmc_mobilenet.cli import main

    port = free_port()
    server = start_local_rpc_server(port)
    killer = threading.Timer(8, stop, args=(server,))  # the bench of 10^6 runs takes minutes
    try:
        wait_until_listening(port, server)
        killer.start()
        code = main(["bench", str(tiny_artifact), "--rpc-host", "127.0.0.1", "--rpc-port", str(port),
                     "--repeat", "100000", "--number", "10", "--rpc-timeout", "600"])  # fmt: skip
    finally:
        killer.cancel()
        stop(server)
    err = capsys.readouterr().err
    assert code == 6, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"server 127.0.0.1:{port}" in last, err


@pytest.mark.timeout(120)
def test_a_server_started_here_is_recognised_as_running_on_this_machine():
    """What tune uses to refuse an emulated board: the server's workspace is on this disk."""
    from tvmc_mobilenet.runtime.rpc import runs_on_this_machine

    port = free_port()
    server = start_local_rpc_server(port)
    try:
        wait_until_listening(port, server)
        session = open_session(RpcTarget(host="127.0.0.1", port=port))
        assert runs_on_this_machine(session, timeout=30)
        del session
    finally:
        stop(server)
