"""Tuning tasks are classified from their TIR, not their names."""

import pytest

from tvmc_mobilenet.compiler.model_source import import_model
from tvmc_mobilenet.options import ModelOptions
from tvmc_mobilenet.compiler.passes import legalize_and_fuse
from tvmc_mobilenet.compiler.tasks import TaskKind, extract_tasks, parse_task_filter
from tvmc_mobilenet.errors import BadInputError
from tvmc_mobilenet.model.spec import LayerKind, layer_specs
from tvmc_mobilenet.targets.registry import resolve_target

TARGET = resolve_target("host").tvm_target()


def tasks_of(**kw):
    options = ModelOptions(**kw)
    return extract_tasks(legalize_and_fuse(import_model(options).mod, TARGET), TARGET), options.model_config()


def distinct(config, kind):
    return {(l.in_channels, l.out_channels, l.in_size, l.stride) for l in layer_specs(config) if l.kind is kind}


def test_mobilenet_tasks_by_kind():
    tasks, config = tasks_of(alpha=0.25, resolution=64)
    by_kind = {k: [t for t in tasks if t.kind is k] for k in TaskKind}
    assert len(by_kind[TaskKind.DEPTHWISE]) == len(distinct(config, LayerKind.DEPTHWISE))
    assert len(by_kind[TaskKind.POINTWISE]) == len(distinct(config, LayerKind.POINTWISE))
    assert len(by_kind[TaskKind.CONV]) == 1 and len(by_kind[TaskKind.DENSE]) == 1 and len(by_kind[TaskKind.POOL]) == 1
    # Repeated layers are one task with a weight: 13 of each separable half in all.
    assert sum(t.weight for t in by_kind[TaskKind.POINTWISE]) == 13
    assert sum(t.weight for t in by_kind[TaskKind.DEPTHWISE]) == 13
    names = {t.name for t in by_kind[TaskKind.DEPTHWISE] + by_kind[TaskKind.POINTWISE]}
    assert all(name.startswith("fused_conv2d") for name in names)  # the names alone could not tell
    pw = max(by_kind[TaskKind.POINTWISE], key=lambda t: t.weight)
    assert pw.weight == 5 and pw.shape == "1×128×4×4 → 128×4×4, 1×1/s1"
    assert pw.flops >= 2 * 128 * 128 * 16
    dw_s2 = [t.shape for t in by_kind[TaskKind.DEPTHWISE] if t.shape.endswith("/s2")]
    assert "1×16×32×32 → 16×16×16, 3×3/s2" in dw_s2


def test_full_conv_variant_has_only_full_convolutions():
    tasks, config = tasks_of(alpha=0.25, resolution=64, variant="full-conv")
    kinds = {t.kind for t in tasks}
    assert TaskKind.DEPTHWISE not in kinds and TaskKind.POINTWISE not in kinds
    assert sum(t.weight for t in tasks if t.kind is TaskKind.CONV) == 14


def test_task_filter():
    assert parse_task_filter("all") is None
    assert parse_task_filter("pointwise, depthwise") == {TaskKind.POINTWISE, TaskKind.DEPTHWISE}
    with pytest.raises(BadInputError, match=r"unknown task kind 'winograd' in --tasks; choose from: all, depthwise"):
        parse_task_filter("pointwise,winograd")
