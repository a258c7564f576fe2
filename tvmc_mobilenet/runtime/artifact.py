"""The artifact: one tar file holding a compiled model and everything needed to trust it.

Members (flat, no directories):

``manifest.json``           what was built, for which target, with which tools, verified how
``model.so``                the compiled library (``model.tar`` where it is an object archive)
``reference_input.npy``     an input the build ran
``reference_output.npy``    the framework's output for it (PyTorch or ONNX Runtime)

This module reads artifacts with the standard library and NumPy only; it never imports torch or
the TVM compiler, so a device with just the TVM runtime can use it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvmc_mobilenet.model.preprocess import Normalisation, default_normalisation, normalisation
from tvmc_mobilenet.errors import ArtifactError
from tvmc_mobilenet.files import atomic_write
from tvmc_mobilenet.runtime.arrays import aligned

FORMAT_NAME = "tvmc-mobilenet-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REFERENCE_INPUT = "reference_input.npy"
REFERENCE_OUTPUT = "reference_output.npy"
#: Largest member accepted when reading (a MobileNet library is a few tens of MB at most).
MAX_MEMBER_BYTES = 1 << 30


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_artifact(path: Path, manifest: dict[str, Any], members: dict[str, bytes]) -> None:
    """Write the tar atomically: to a temporary file beside ``path``, then renamed over it.

    ``members`` maps member names to their bytes; the manifest is added as ``manifest.json``.
    An interrupted write leaves no partial file at ``path``.
    """
    entries = {MANIFEST: json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n", **members}

    def write_tar(f) -> None:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in entries.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = int(manifest.get("build", {}).get("created_unix", 0))
                tar.addfile(info, io.BytesIO(data))

    atomic_write(path, write_tar)


@dataclass
class Artifact:
    """An artifact opened from disk; member bytes are read into memory on open."""

    path: Path
    manifest: dict[str, Any]
    members: dict[str, bytes]

    @property
    def library_name(self) -> str:
        return self.manifest["library"]["file"]

    @property
    def library_bytes(self) -> bytes:
        return self.members[self.library_name]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["input"]["shape"])

    @property
    def input_dtype(self) -> str:
        return self.manifest["input"]["dtype"]

    @property
    def normalisation(self) -> Normalisation:
        """How images are normalised for the model: as recorded at build time (artifacts built
        before ``--preprocess`` existed get the default of their model's source)."""
        recorded = self.manifest["input"].get("preprocess")
        if recorded:
            return normalisation(recorded["name"])
        return default_normalisation(self.manifest["model"].get("source", "builtin"), self.input_shape)

    @property
    def num_classes(self) -> int:
        """Outputs per image (the last axis of the output)."""
        return int(self.manifest["output"]["shape"][-1])

    @property
    def target_name(self) -> str:
        return self.manifest["target"]["name"]

    @property
    def device(self) -> str:
        return self.manifest["target"]["device"]

    def reference_input(self) -> np.ndarray:
        return _load_npy(self, REFERENCE_INPUT)

    def reference_output(self) -> np.ndarray:
        return _load_npy(self, REFERENCE_OUTPUT)

    def verify_library(self) -> None:
        """Refuse a library whose sha256 differs from the manifest's (tampered or corrupt)."""
        expected = self.manifest["library"]["sha256"]
        actual = sha256_bytes(self.library_bytes)
        if actual != expected:
            raise ArtifactError(
                f"artifact {str(self.path)!r}: library {self.library_name} has sha256 {actual[:16]}…, "
                f"but the manifest says {expected[:16]}…; the file is corrupt or was modified, refusing to load it"
            )

    def extract_library(self, directory: Path) -> Path:
        """Write the (verified) library into ``directory`` and return its path."""
        self.verify_library()
        out = Path(directory) / self.library_name
        out.write_bytes(self.library_bytes)
        return out


def open_artifact(path: Path) -> Artifact:
    """Read and validate an artifact. Every way it can be wrong is an :class:`ArtifactError`."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"artifact {str(path)!r} does not exist")
    if not path.is_file():
        raise ArtifactError(f"artifact {str(path)!r} is not a file")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                name = info.name
                if not info.isfile() or "/" in name or "\\" in name or name in ("", ".", ".."):
                    raise ArtifactError(
                        f"artifact {str(path)!r} contains {name!r}, which is not a plain top-level file; "
                        "refusing it (artifacts are flat archives)"
                    )
                if info.size > MAX_MEMBER_BYTES:
                    raise ArtifactError(f"artifact {str(path)!r}: member {name!r} is too large ({info.size} bytes)")
                f = tar.extractfile(info)
                members[name] = f.read() if f is not None else b""
    except ArtifactError:
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactError(
            f"artifact {str(path)!r} is not a readable tvmc-mobilenet artifact ({type(exc).__name__}: {exc}); "
            "was it truncated? rebuild it with 'tvmc-mobilenet build'"
        ) from None
    if MANIFEST not in members:
        raise ArtifactError(f"artifact {str(path)!r} has no {MANIFEST}; it is not a tvmc-mobilenet artifact")
    try:
        manifest = json.loads(members[MANIFEST])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"artifact {str(path)!r}: {MANIFEST} is not valid JSON ({exc})") from None
    _check_manifest(path, manifest, members)
    return Artifact(path, manifest, members)


def _check_manifest(path: Path, manifest: Any, members: dict[str, bytes]) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"artifact {str(path)!r} is not a tvmc-mobilenet artifact (manifest format is not {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"artifact {str(path)!r}: manifest has no integer format_version")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {str(path)!r} has format version {version}, newer than this tvmc-mobilenet reads "
            f"({FORMAT_VERSION}); upgrade tvmc-mobilenet"
        )
    try:
        library = manifest["library"]["file"]
        manifest["library"]["sha256"]
        shape = manifest["input"]["shape"]
        manifest["input"]["dtype"]
        manifest["target"]["name"]
        manifest["target"]["device"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"artifact {str(path)!r}: manifest lacks the field {exc}") from None
    if not (isinstance(shape, list) and all(isinstance(d, int) and d > 0 for d in shape)):
        raise ArtifactError(f"artifact {str(path)!r}: manifest input shape {shape!r} is not a list of positive integers")
    for name in (library, REFERENCE_INPUT, REFERENCE_OUTPUT):
        if name not in members:
            raise ArtifactError(f"artifact {str(path)!r} lacks the member {name!r}; rebuild it")


def _load_npy(artifact: Artifact, name: str) -> np.ndarray:
    try:
        return aligned(np.load(io.BytesIO(artifact.members[name]), allow_pickle=False))
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"artifact {str(artifact.path)!r}: {name} is not a valid .npy array ({exc})") from None
