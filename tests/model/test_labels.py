"""Class names: ImageNet's shipped list (1000, or 1001 with TensorFlow's background class), a
user's labels file, and labels files that do not fit the model."""

from __future__ import annotations

import pytest

from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.labels import default_labels, imagenet_classes, read_labels


def test_imagenet_names_in_the_standard_order():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby" and names[999] == "toilet tissue"
    assert default_labels(1000) == names
    assert default_labels(1001)[0] == "background" and default_labels(1001)[1:] == names  # TensorFlow's models
    assert default_labels(10) is None


def test_a_labels_file(tmp_path):
    (tmp_path / "l.txt").write_bytes(b"cat\r\ndog\r\nbird\r\n\r\n")  # Windows line ends, blank lines at the end
    assert read_labels(tmp_path / "l.txt", 3) == ("cat", "dog", "bird")
    (tmp_path / "gap.txt").write_text("cat\n\nbird\n")  # a blank line inside is a (nameless) class
    assert read_labels(tmp_path / "gap.txt", 3) == ("cat", "", "bird")


@pytest.mark.faults("bad_input")
def test_labels_files_that_do_not_fit(tmp_path):
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(BadInputError, match=r"labels file '.*two\.txt' has 2 names, but the model has 1000 outputs"):
        read_labels(tmp_path / "two.txt", 1000)
    with pytest.raises(BadInputError, match="does not exist"):
        read_labels(tmp_path / "none.txt", 2)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BadInputError, match="is not UTF-8 text"):
        read_labels(tmp_path / "bin.txt", 1)
