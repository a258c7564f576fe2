"""Atomic writes and the cache directory."""

from pathlib import Path

import pytest

from tvmc_mobilenet.files import atomic_write, cache_dir, write_json


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write(path, b"one")
    atomic_write(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two"
    write_json(tmp_path / "r.json", {"a": 1})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f.bin", "r.json", "sub"]


@pytest.mark.faults("fault")
def test_an_interrupted_write_leaves_the_old_file_and_no_partial(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_cache_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("tuning", "host") == tmp_path / "tvmc-mobilenet" / "tuning" / "host"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "tvmc-mobilenet"
