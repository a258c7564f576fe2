"""An emulated Raspberry Pi: a stock TVM RPC server on an aarch64 CPython, under qemu user mode.

For tests and demos without a board. The device is assembled from parts that a real board would
have (Debian's arm64 CPython, the aarch64 wheels of TVM's runtime) into a sysroot, and run with
``qemu-aarch64 -L SYSROOT``. ``QEMU_CPU=cortex-a72`` (the Pi 4's core) makes an instruction a real
A72 lacks fail here as it would there. Emulated timings say nothing about a real board.

What the sysroot holds (~200 MB, built once under the user's cache directory):

* Debian arm64 packages of CPython 3.11 and its libraries, fetched with ``apt-get download`` and
  unpacked with ``dpkg -x`` (needs ``dpkg --add-architecture arm64`` and ``apt-get update`` once,
  as root: ``scripts/install-system-packages.sh`` does it);
* the aarch64 wheels of apache-tvm (runtime only: ``libtvm_compiler.so`` is deleted, the server
  runs with ``TVM_USE_RUNTIME_LIB=1``), apache-tvm-ffi and what TVM's RPC server imports;
* ``python-aarch64``, a wrapper that starts that CPython under qemu with ``argv[0]`` pointing at
  the wrapper itself, so that the worker processes the RPC server spawns through
  ``sys.executable`` run under qemu too (binfmt_misc is not available here).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tvmc_mobilenet.errors import RpcError, TargetError
from tvmc_mobilenet.files import cache_dir

DEB_PACKAGES = (
    "python3.11",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libstdc++6",
    "libgcc-s1",
    "zlib1g",
    "libffi8",
    "libssl3",
    "libexpat1",
    "libbz2-1.0",
    "libcrypt1",
    "liblzma5",
    "libuuid1",
    "libsqlite3-0",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
)
#: What TVM's RPC server imports on the device (installed without dependency resolution).
#: Besides these, the device gets the TVM and tvm-ffi installed here (:func:`wheels`): a runtime of
#: another version may not load what this one builds.
WHEELS = (
    "numpy",
    "ml_dtypes",
    "typing_extensions",
    "cloudpickle",
    "psutil",
    "tornado",
)
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


def wheels() -> tuple[str, ...]:
    """What the device installs: this machine's TVM and tvm-ffi, pinned to the same versions, and
    what TVM's RPC server imports."""
    pinned = []
    for dist in ("apache-tvm", "apache-tvm-ffi"):
        try:
            pinned.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            raise TargetError(
                f"the emulated device installs the {dist} this machine has, and none is installed from a wheel here"
            ) from None
    return (*pinned, *WHEELS)


MARKER = "sysroot.json"
DEFAULT_CPU = "cortex-a72"


@dataclass(frozen=True)
class Sysroot:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "python-aarch64"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def runtime_extra(self) -> Path:
        """Holds ``tvm.contrib.random.random_fill_for_measure``, which MetaSchedule's runner calls."""
        return self.site / "tvm" / "lib" / "libtvm_runtime_extra.so"

    @property
    def ready(self) -> bool:
        return (self.root / MARKER).is_file()


def default_sysroot_dir() -> Path:
    return cache_dir("emulated-aarch64")


def missing_tools() -> list[str]:
    """Host tools the emulated device needs, with the Debian package that provides each."""
    needs = {"qemu-aarch64": "qemu-user", "apt-get": "apt", "dpkg": "dpkg"}
    return [f"{tool} ({package})" for tool, package in needs.items() if shutil.which(tool) is None]


def prepare_sysroot(root: Path | None = None, log: Callable[[str], None] = lambda _m: None) -> Sysroot:
    """Build the sysroot unless it is there already; built aside and renamed, never half-made."""
    sysroot = Sysroot(Path(root) if root else default_sysroot_dir())
    if sysroot.ready:
        return sysroot
    missing = missing_tools()
    if missing:
        raise TargetError(f"the emulated device needs {', '.join(missing)}; install them with scripts/install-system-packages.sh (as root)")
    sysroot.root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{sysroot.root.name}.", dir=sysroot.root.parent))
    try:
        partial = Sysroot(work / "sysroot")
        partial.root.mkdir()
        _unpack_debian_packages(partial.root, work / "debs", log)
        _install_wheels(partial.site, log)
        compiler = partial.site / "tvm" / "lib" / "libtvm_compiler.so"
        compiler.unlink(missing_ok=True)  # a device has the runtime only
        partial.python.write_text(
            "#!/bin/sh\n"
            "# The sysroot's aarch64 CPython under qemu; argv[0] is this script, so that\n"
            "# subprocesses started through sys.executable are emulated too.\n"
            'here="$(cd "$(dirname "$0")" && pwd)"\n'
            'exec qemu-aarch64 -L "$here" -0 "$here/python-aarch64" "$here/usr/bin/python3.11" "$@"\n'
        )
        partial.python.chmod(0o755)
        (partial.root / MARKER).write_text(json.dumps({"packages": DEB_PACKAGES, "wheels": wheels()}, indent=2) + "\n")
        if sysroot.root.exists():
            shutil.rmtree(sysroot.root)
        os.replace(partial.root, sysroot.root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"emulated aarch64 device ready in {sysroot.root}")
    return sysroot


def _unpack_debian_packages(root: Path, debs: Path, log: Callable[[str], None]) -> None:
    debs.mkdir()
    log(f"downloading {len(DEB_PACKAGES)} Debian arm64 packages (CPython 3.11 and its libraries)")
    proc = subprocess.run(
        ["apt-get", "download", *(f"{p}:arm64" for p in DEB_PACKAGES)],
        cwd=debs,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise TargetError(
            f"apt-get download of the arm64 packages failed ({detail}); run 'dpkg --add-architecture arm64 && "
            "apt-get update' as root (scripts/install-system-packages.sh does)"
        )
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True, timeout=300)


def _install_wheels(site: Path, log: Callable[[str], None]) -> None:
    log("installing the aarch64 wheels of TVM's runtime and its imports")
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), *platforms,
         "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *wheels()],
        capture_output=True,
        text=True,
        timeout=1200,
    )  # fmt: skip
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or ["unknown error"]
        raise TargetError(f"installing the aarch64 wheels failed: {errors[-1]}")


def device_env(sysroot: Sysroot, cpu: str = DEFAULT_CPU) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QEMU_CPU=cpu, PYTHONPATH=str(sysroot.site), TVM_USE_RUNTIME_LIB="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONHOME", None)
    return env


def start_server(
    sysroot: Sysroot,
    key: str,
    tracker: tuple[str, int] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 9090,
    cpu: str = DEFAULT_CPU,
    log_path: Path | None = None,
) -> subprocess.Popen:
    """Start TVM's stock RPC server on the emulated device (in its own process group)."""
    if not sysroot.ready:
        raise TargetError(f"the emulated device in {sysroot.root} is not set up; run 'tvmc-mobilenet device setup'")
    cmd = [str(sysroot.python), "-m", "tvm.exec.rpc_server", "--host", host, "--port", str(port),
           "--port-end", str(port + 1), "--load-library", str(sysroot.runtime_extra)]  # fmt: skip
    if tracker is not None:
        cmd += ["--tracker", f"{tracker[0]}:{tracker[1]}", "--key", key]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (handed to the child)
    return subprocess.Popen(cmd, env=device_env(sysroot, cpu), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_tracker(host: str = "127.0.0.1", port: int = 9190, log_path: Path | None = None) -> subprocess.Popen:
    """Start TVM's stock RPC tracker (in its own process group)."""
    cmd = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", host, "--port", str(port), "--port-end", str(port + 1)]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def peek_returncode(process: subprocess.Popen) -> int | None:
    """``process``'s exit status if it has ended (negative: the signal that ended it), else None,
    *without reaping it*: while it stays unreaped its PID, and so its process group's ID, cannot be
    given to another process, so what is left of its group can still be stopped safely."""
    if process.returncode is not None:
        return process.returncode
    if not hasattr(os, "waitid"):  # not Linux: poll() reaps, which is the best there is
        return process.poll()
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped behind Popen's back
        return process.poll()
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process started here, and everything it started, by its PID (process group).

    SIGTERM first, SIGKILL after ``timeout``. Once the leader has exited, and before it is reaped,
    whatever is left of its group (a worker that outlived it) gets SIGKILL, so nothing stays behind.
    A process already reaped is left alone: its PID may belong to another process by now.
    """
    if process.returncode is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if peek_returncode(process) is not None:
            break
        _signal_group(process.pid, sig)
        deadline = time.monotonic() + wait
        while peek_returncode(process) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    if peek_returncode(process) is None:
        return  # not even SIGKILL ended it in time (stuck in the kernel): nothing more to do by PID
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGKILL)  # the leader is a zombie: its group ID is still ours
        _wait_until_group_ended(process.pid)
        process.wait()


def _wait_until_group_ended(pgid: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until no process of group ``pgid`` but zombies is left: a member SIGKILL has
    reached may still be exiting, with its sockets still open (a server's child process holding
    the listening port)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for member in psutil.process_iter():
            try:
                if os.getpgid(member.pid) == pgid and member.status() != psutil.STATUS_ZOMBIE:
                    alive = True
                    break
            except (ProcessLookupError, psutil.Error, OSError):
                continue
        if not alive:
            return
        time.sleep(0.02)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for_servers(tracker: tuple[str, int], key: str, count: int, timeout: float, processes=()) -> None:
    """Wait (bounded) until ``count`` servers are registered under ``key``."""
    from tvmc_mobilenet.runtime.rpc import servers_for_key, tracker_summary

    deadline = time.time() + timeout
    last = "tracker not reachable"
    while time.time() < deadline:
        for process in processes:
            code = peek_returncode(process)  # not reaped: stop() can still clear its process group
            if code is not None:
                raise RpcError(f"the device process {process.pid} exited with code {code} before registering")
        try:
            found = servers_for_key(tracker_summary(*tracker, timeout=5), key)
            if found >= count:
                return
            last = f"{found} of {count} registered"
        except RpcError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RpcError(f"devices under key {key!r} did not register with the tracker within {timeout:g} s ({last})")
