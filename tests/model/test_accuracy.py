"""Published ImageNet top-1 of MobileNet v1, with its source."""

from tvmc_mobilenet.model.accuracy import PAPER, TF_SLIM, published_top1


def test_published_accuracy_names_its_source():
    assert published_top1(1.0, 224).top1 == 70.6 and published_top1(1.0, 224).source == PAPER  # Table 6
    assert published_top1(1.0, 128).top1 == 64.4 and published_top1(1.0, 128).source == PAPER  # Table 7
    assert published_top1(0.5, 160).top1 == 59.1 and published_top1(0.5, 160).source == TF_SLIM
    assert published_top1(0.25, 128).top1 == 41.5
    assert published_top1(0.3, 224) is None and published_top1(1.0, 96) is None
