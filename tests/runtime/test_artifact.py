"""Reading artifacts: every way one can be damaged is refused with a clear message."""

import io
import json
import tarfile

import pytest

from tvmc_mobilenet.errors import ArtifactError
from tvmc_mobilenet.runtime.artifact import FORMAT_VERSION, MANIFEST, open_artifact, write_artifact


def _rewrite(path, mutate_manifest=None, mutate_members=None):
    """Rewrite an artifact with its manifest or members changed."""
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    manifest = json.loads(members.pop(MANIFEST))
    if mutate_manifest:
        mutate_manifest(manifest)
    if mutate_members:
        mutate_members(members)
    write_artifact(path, manifest, members)


def test_round_trip(tiny_artifact):
    art = open_artifact(tiny_artifact)
    art.verify_library()
    assert art.input_shape == (1, 3, 96, 96) and art.input_dtype == "float32"
    assert art.target_name == "host" and art.device == "cpu"


def test_missing_and_not_a_file(tmp_path):
    with pytest.raises(ArtifactError, match=r"does not exist"):
        open_artifact(tmp_path / "nope.tar")
    with pytest.raises(ArtifactError, match=r"is not a file"):
        open_artifact(tmp_path)


@pytest.mark.faults("bad_input")
def test_truncated(artifact_copy):
    data = artifact_copy.read_bytes()
    artifact_copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"(not a readable tvmc-mobilenet artifact.*truncated|lacks the member)"):
        open_artifact(artifact_copy)


@pytest.mark.faults("bad_input")
def test_not_an_archive(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"hello, this is not a tar file" * 100)
    with pytest.raises(ArtifactError, match=r"not a readable tvmc-mobilenet artifact"):
        open_artifact(path)


@pytest.mark.faults("bad_input")
def test_tar_without_manifest(tmp_path):
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ArtifactError, match=r"has no manifest.json; it is not a tvmc-mobilenet artifact"):
        open_artifact(path)


@pytest.mark.faults("bad_input")
def test_someone_elses_manifest(artifact_copy):
    _rewrite(artifact_copy, lambda m: m.update(format="something-else"))
    with pytest.raises(ArtifactError, match=r"is not a tvmc-mobilenet artifact"):
        open_artifact(artifact_copy)


@pytest.mark.faults("bad_input")
def test_newer_format_version(artifact_copy):
    _rewrite(artifact_copy, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ArtifactError, match=r"format version 2, newer than this tvmc-mobilenet reads \(1\); upgrade"):
        open_artifact(artifact_copy)


@pytest.mark.faults("bad_input")
def test_manifest_missing_a_field(artifact_copy):
    _rewrite(artifact_copy, lambda m: m.pop("input"))
    with pytest.raises(ArtifactError, match=r"manifest lacks the field 'input'"):
        open_artifact(artifact_copy)


@pytest.mark.faults("bad_input")
def test_library_hash_mismatch_is_refused(artifact_copy):
    def flip_a_byte(members):
        lib = bytearray(members["model.so"])
        lib[len(lib) // 2] ^= 0xFF
        members["model.so"] = bytes(lib)

    _rewrite(artifact_copy, mutate_members=flip_a_byte)
    art = open_artifact(artifact_copy)
    with pytest.raises(ArtifactError, match=r"has sha256 .* but the manifest says .* refusing to load it"):
        art.verify_library()


@pytest.mark.faults("bad_input")
def test_member_escaping_the_directory_is_refused(artifact_copy):
    with tarfile.open(artifact_copy, "a") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArtifactError, match=r"contains '../../etc/evil', which is not a plain top-level file"):
        open_artifact(artifact_copy)


@pytest.mark.faults("bad_input")
def test_symlink_member_is_refused(artifact_copy):
    with tarfile.open(artifact_copy, "a") as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ArtifactError, match=r"contains 'link', which is not a plain top-level file"):
        open_artifact(artifact_copy)


@pytest.mark.faults("fault")
def test_interrupted_write_leaves_no_file(tmp_path):
    class Boom(Exception):
        pass

    class Exploding(bytes):
        def __len__(self):
            raise Boom

    path = tmp_path / "a.tar"
    with pytest.raises(Boom):
        write_artifact(path, {"format": "x"}, {"model.so": Exploding(b"abc")})
    assert list(tmp_path.iterdir()) == []
