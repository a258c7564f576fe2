"""MetaSchedule tuning databases: a directory holding MetaSchedule's two JSON-lines files.

One database per target, by default under the user's cache directory
(``$XDG_CACHE_HOME/tvmc-mobilenet/tuning/<target>``), shared by every model built for that target:
a record belongs to a kernel's workload, so α=0.5 and α=1.0 reuse each other's records wherever
their layers have the same shapes.

MetaSchedule appends one line per record. A tune killed in the middle of a write leaves a
truncated last line, which MetaSchedule cannot load: readers leave it out of what they load (with
a warning) and keep the rest; the next tune, the database's only writer, drops it from the file
(:func:`repair_truncated_tail`). Any other malformed line is an error, never skipped silently.

A tune holds the directory's lock (:func:`exclusive_lock`) while it writes; a second tune is
refused. Readers (a build) never write: they load a snapshot of the complete records as of the
moment they open the database, so a build during a tune sees a consistent database and the
tune's files are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvmc_mobilenet.errors import TuningError, message_line
from tvmc_mobilenet.files import atomic_write, cache_dir

if TYPE_CHECKING:
    import tvm

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
LOCK_FILE = ".lock"
#: MetaSchedule stores a failed build or run with the run time FAILED_RUN_RECORD_SECONDS; any
#: record at or above FAILED_RUN_SECONDS is a failure.
FAILED_RUN_RECORD_SECONDS = 1e10
FAILED_RUN_SECONDS = 1e9


def default_database_dir(target_name: str) -> Path:
    """The target's database directory: registry names as they are, other targets by a digest."""
    if re.fullmatch(r"[A-Za-z0-9_.-]+", target_name):
        return cache_dir("tuning", target_name)
    digest = hashlib.sha256(target_name.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", target_name).strip("_")[:40]
    return cache_dir("tuning", f"{slug}-{digest}")


def run_seconds(run_secs) -> float | None:
    """A measurement's run time: the mean of its runs, as MetaSchedule ranks records; None for a
    failed build or run (no runs, or MetaSchedule's impossible failure time)."""
    secs = [float(s) for s in run_secs] if run_secs else []
    if not secs or max(secs) >= FAILED_RUN_SECONDS:
        return None
    return sum(secs) / len(secs)


def estimated_latency_ms(tasks: Iterable[tuple[float, float | None]]) -> float | None:
    """Σ weight × best run time (ms) over (weight, best seconds) pairs: a model's end-to-end
    estimate; None while any task has no successful measurement."""
    tasks = list(tasks)
    if not tasks or any(best is None for _, best in tasks):
        return None
    return 1e3 * sum(weight * best for weight, best in tasks)


@dataclass
class KernelRecords:
    """What a database holds for one kernel."""

    trials: int  # records, failed ones included
    best_seconds: float | None  # fastest successful run


@dataclass
class TuningDatabase:
    path: Path
    database: Any  # tvm.s_tir.meta_schedule.database.JSONDatabase
    #: The bytes of both files that ``database`` was loaded from (complete lines only).
    contents: dict[str, bytes]

    def sha256(self) -> str:
        """One hash over both files as loaded, so a build records exactly which records it used."""
        digest = hashlib.sha256()
        for name in (WORKLOAD_FILE, RECORD_FILE):
            digest.update(name.encode())
            digest.update(self.contents[name])
        return digest.hexdigest()

    def require_target(self, target: tvm.target.Target) -> None:
        """Refuse a database holding records tuned for another target (another ISA, CPU or GPU):
        its schedules may not even run here, and ignoring them silently would hide the mix-up."""
        wanted = target_signature(target)
        foreign = Counter(target_signature(r.target) for r in self.database.get_all_tuning_records())
        foreign.pop(wanted, None)
        if foreign:
            other = foreign.most_common(1)[0][0]
            total = sum(foreign.values())
            raise TuningError(
                f"tuning database {str(self.path)!r} holds {total} record{'s' if total > 1 else ''} tuned for {other}"
                f"{' (and other targets)' if len(foreign) > 1 else ''}, not for this build's target {wanted}; give the "
                "database tuned for this target (or --no-tuning-db)"
            )

    def count_tuned(self, mod: tvm.IRModule, target: tvm.target.Target) -> tuple[int, int]:
        """(kernels of ``mod`` with a tuning record for ``target``, kernels in all)."""
        import tvm
        from tvm import tirx

        tuned = total = 0
        for _gvar, func in mod.functions.items():
            if not isinstance(func, tirx.PrimFunc):
                continue
            total += 1
            kernel = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
            if self.database.query_schedule(kernel, target, workload_name="main") is not None:
                tuned += 1
        return tuned, total

    def records_by_workload(self) -> dict[int, KernelRecords]:
        """Trials and best run time per workload, keyed by the workload's structural hash."""
        out: dict[int, KernelRecords] = {}
        for record in self.database.get_all_tuning_records():
            key = int(record.workload.as_json()[0])
            entry = out.setdefault(key, KernelRecords(0, None))
            entry.trials += 1
            seconds = run_seconds(record.run_secs)
            if seconds is not None and (entry.best_seconds is None or seconds < entry.best_seconds):
                entry.best_seconds = seconds
        return out


def tuning_curve(database: TuningDatabase, tasks: list[tuple[int, int]]) -> list[tuple[int, float]]:
    """Replay the records in the order they were committed: the estimated end-to-end latency
    (Σ weight × best run time, in ms) after each trial, from the first trial at which every task
    had a successful measurement.

    ``tasks`` is a list of (workload key, weight). Trials count only records of these workloads,
    so the curve of one model is unaffected by other models' records in a shared database.
    """
    weights = dict(tasks)
    best: dict[int, float] = {}
    curve: list[tuple[int, float]] = []
    trials = 0
    # MetaSchedule's in-memory database orders records by run time; the file keeps commit order.
    # The lines are the ones the database was loaded from (complete, consistent with each other).
    workloads = [int(json.loads(line)[0]) for line in _data_lines(database.contents[WORKLOAD_FILE])]
    for line in _data_lines(database.contents[RECORD_FILE]):
        workload_index, record = json.loads(line)
        key = workloads[workload_index]
        if key not in weights:
            continue
        trials += 1
        seconds = run_seconds(record[1])
        if seconds is not None:
            best[key] = min(best.get(key, float("inf")), seconds)
        estimate = estimated_latency_ms((weight, best.get(k)) for k, weight in weights.items())
        if estimate is not None:
            curve.append((trials, estimate))
    return curve


def _lines(file: Path) -> list[bytes]:
    return _data_lines(file.read_bytes())


def _data_lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line.strip()]


def workload_key(mod: tvm.IRModule) -> int:
    """The key MetaSchedule's JSON database files a kernel under (its structural hash)."""
    import tvm_ffi

    return int(tvm_ffi.structural_hash(mod))


def target_signature(target: tvm.target.Target) -> str:
    """What must agree between a record's target and a build's: kind, triple, CPU, GPU arch."""
    parts = [target.kind.name]
    for attr in ("mtriple", "mcpu", "arch"):
        value = target.attrs.get(attr) if hasattr(target.attrs, "get") else None
        if value:
            parts.append(f"-{attr}={value}")
    return " ".join(parts)


def create_database_dir(path: Path) -> None:
    """Make an empty database directory (both files) unless there is one."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name in (WORKLOAD_FILE, RECORD_FILE):
            (path / name).touch(exist_ok=True)
    except OSError as exc:
        raise TuningError(f"cannot create the tuning database {str(path)!r}: {exc.strerror}") from None


def open_tuning_database(path: Path, *, create: bool = False, writer: bool = False) -> TuningDatabase:
    """Open a database directory; with ``create``, make an empty one if it does not exist.

    A reader (the default) never modifies the files: it loads a snapshot of their complete
    lines; a truncated last line (a killed write) is left out with a warning, or quietly when a
    tune holds the lock, since that line is the write in progress. The ``writer`` (a tune,
    holding :func:`exclusive_lock`) repairs such a line in the files and loads them in place,
    so that its commits go to them.
    """
    path = Path(path)
    if create:
        create_database_dir(path)
    if not path.is_dir():
        raise TuningError(f"tuning database {str(path)!r} is not a directory")
    missing = [name for name in (WORKLOAD_FILE, RECORD_FILE) if not (path / name).is_file()]
    if missing:
        raise TuningError(
            f"tuning database {str(path)!r} lacks {', '.join(missing)}; a MetaSchedule database directory "
            "holds both (create one with 'tvmc-mobilenet tune')"
        )
    if writer:
        for name in (WORKLOAD_FILE, RECORD_FILE):
            repair_truncated_tail(path / name)
        contents = {name: (path / name).read_bytes() for name in (WORKLOAD_FILE, RECORD_FILE)}
        return TuningDatabase(path, _load_json_database(path, path), contents)
    # Records first: a record names its workload by line number, and the writer adds the
    # workload before the record, so every record read here has its workload in what follows.
    write_in_progress = locked_by_a_tune(path)
    contents = {name: complete_lines(path / name, quiet=write_in_progress) for name in (RECORD_FILE, WORKLOAD_FILE)}
    snapshot = Path(tempfile.mkdtemp(prefix="tvmc-mobilenet-db-"))
    try:
        for name, data in contents.items():
            (snapshot / name).write_bytes(data)
        database = _load_json_database(snapshot, path)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    return TuningDatabase(path, database, contents)


def _load_json_database(files: Path, path: Path):
    from tvm.s_tir import meta_schedule as ms

    from tvmc_mobilenet.schedules.intrinsics import register_schedule_intrinsics

    register_schedule_intrinsics()  # the records' traces name our tensor intrinsics

    try:
        return ms.database.JSONDatabase(
            path_workload=str(files / WORKLOAD_FILE),
            path_tuning_record=str(files / RECORD_FILE),
            allow_missing=False,
        )
    except Exception as exc:  # TVM raises its own error types for unreadable records
        raise TuningError(f"tuning database {str(path)!r} cannot be read: {message_line(exc)}") from None


def locked_by_a_tune(path: Path) -> bool:
    """Whether a tune holds the database's lock right now."""
    try:
        fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also releases the shared lock taken just now
    return False


def complete_lines(file: Path, quiet: bool = False) -> bytes:
    """The file's complete records: a truncated last line is left out (with a warning unless
    ``quiet``); any other malformed line is an error."""
    lines = _lines(file)
    truncated = _truncated_tail(file, lines)
    if truncated and not quiet:
        warnings.warn(
            f"tuning database file {file} ends in a truncated record (an interrupted write); left it out and "
            f"kept the {len(lines) - 1} complete ones (the next tune drops it from the file)",
            stacklevel=3,
        )
    return b"".join(line + b"\n" for line in (lines[:-1] if truncated else lines))


def _truncated_tail(file: Path, lines: list[bytes]) -> bool:
    """Whether the last line is a truncated record; raises for a malformed line anywhere else."""
    bad = [number for number, line in enumerate(lines, start=1) if not _is_json(line)]
    if bad and bad != [len(lines)]:
        raise TuningError(
            f"tuning database file {str(file)!r} has a malformed record at line {bad[0]}; "
            "the file is damaged (not just interrupted): restore it or move it away"
        )
    return bool(bad)


def repair_truncated_tail(file: Path) -> bool:
    """Drop a last line that is not valid JSON (a write cut short); returns whether it did.

    Any other invalid line is an error: it means the file was damaged, not interrupted.
    """
    data = file.read_bytes()
    lines = _data_lines(data)
    if not _truncated_tail(file, lines):
        if data and not data.endswith(b"\n"):  # a complete record that lacks only its newline
            atomic_write(file, data + b"\n")
        return False
    warnings.warn(
        f"tuning database file {file} ended in a truncated record (an interrupted write); dropped that line "
        f"and kept the {len(lines) - 1} complete ones",
        stacklevel=2,
    )
    atomic_write(file, b"".join(line + b"\n" for line in lines[:-1]))
    return True


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


@contextlib.contextmanager
def exclusive_lock(path: Path, patience: float = 2.0) -> Iterator[None]:
    """Hold the database's lock for a tune; a second tune on the same directory is refused.

    Readers take the lock shared for an instant (:func:`locked_by_a_tune`), so the tune tries
    for ``patience`` seconds before concluding that another tune holds it.
    """
    lock_path = Path(path) / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    raise TuningError(
                        f"tuning database {str(path)!r} is in use by a running tune (pid {holder}); wait for it to "
                        "finish or give another --work-dir"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # no stale pid for the next refusal to name
    finally:
        os.close(fd)  # closing releases the lock
