"""Packaging: the tvm-ffi pin that keeps MetaSchedule's database writes from crashing."""

import importlib.metadata
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pins() -> dict[str, str]:
    """The ``name==version`` requirements of pyproject.toml: the one place the pins are written."""
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return dict(d.split("==", 1) for d in deps if "==" in d)


def test_pyproject_pins_tvm_and_tvm_ffi():
    versions = pins()
    assert versions["apache-tvm"].startswith("0.27")
    # 0.1.15.post1/.post2 segfault in tvm.ir.save_json, i.e. in every MetaSchedule database write.
    assert versions["apache-tvm-ffi"] not in ("0.1.15.post1", "0.1.15.post2")


def test_installed_versions_match_the_pins():
    for name, version in pins().items():
        assert importlib.metadata.version(name) == version, name


def test_save_json_does_not_crash():
    """The crash itself: a segfault kills the interpreter, so probe in a subprocess."""
    script = textwrap.dedent(
        """
        import tvm
        from tvm import te

        a = te.placeholder((4,), name="a")
        b = te.compute((4,), lambda i: a[i] + 1.0, name="b")
        text = tvm.ir.save_json(tvm.IRModule({"main": te.create_prim_func([a, b])}))
        assert tvm.ir.load_json(text) is not None
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    assert proc.stdout.strip() == "ok"


def test_torch_requirement_admits_the_local_cpu_build():
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    assert torch_req in ("torch", "torch>=2.4")  # 2.13.0 (CPU, on disk) satisfies it: no CUDA download
