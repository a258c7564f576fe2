"""Files the tool writes: atomically, and under one cache directory.

Every result file, artifact and database repair goes through :func:`atomic_write`: the data is
written to a temporary file beside the destination, flushed to disk, then renamed over it, so a
crash or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, or a function that writes to the open file) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as indented JSON, written atomically."""
    atomic_write(path, (json.dumps(payload, indent=2) + "\n").encode())


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/tvmc-mobilenet/<parts>`` (``~/.cache`` when the variable is unset): where
    tuning databases and the emulated device live unless the user names another place."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "tvmc-mobilenet", *parts)
