"""MetaSchedule tuning databases: a directory holding MetaSchedule's two JSON files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvmc_mobilenet.errors import TuningError

if TYPE_CHECKING:
    import tvm

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


@dataclass
class TuningDatabase:
    path: Path
    database: Any  # tvm.s_tir.meta_schedule.database.JSONDatabase

    def sha256(self) -> str:
        """One hash over both files, so a build records exactly which records it used."""
        digest = hashlib.sha256()
        for name in (WORKLOAD_FILE, RECORD_FILE):
            digest.update(name.encode())
            digest.update((self.path / name).read_bytes())
        return digest.hexdigest()

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


def open_tuning_database(path: Path) -> TuningDatabase:
    """Open an existing database directory for reading (never creates or modifies it)."""
    path = Path(path)
    if not path.is_dir():
        raise TuningError(f"tuning database {str(path)!r} is not a directory")
    missing = [name for name in (WORKLOAD_FILE, RECORD_FILE) if not (path / name).is_file()]
    if missing:
        raise TuningError(
            f"tuning database {str(path)!r} lacks {', '.join(missing)}; a MetaSchedule database directory "
            "holds both (create one with 'tvmc-mobilenet tune')"
        )
    from tvm.s_tir import meta_schedule as ms

    try:
        database = ms.database.JSONDatabase(
            path_workload=str(path / WORKLOAD_FILE),
            path_tuning_record=str(path / RECORD_FILE),
            allow_missing=False,
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise TuningError(f"tuning database {str(path)!r} cannot be read: {first}") from None
    return TuningDatabase(path, database)
