"""The environment report behind `tvmc-mobilenet env`."""

import importlib.metadata
import shutil

from tvmc_mobilenet.targets.toolchain import environment_report, tool_version


def test_report_names_the_stack():
    report = environment_report()
    assert report["apache-tvm"] == importlib.metadata.version("apache-tvm")
    assert report["apache-tvm-ffi"] == importlib.metadata.version("apache-tvm-ffi")
    assert report["llvm"] and report["llvm"][0].isdigit()
    assert report["gcc"] and "g++" in report["gcc"]


def test_tool_versions():
    assert tool_version("no-such-tool-anywhere") is None
    if shutil.which("nvcc"):
        assert "release" in tool_version("nvcc")
