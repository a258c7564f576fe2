"""Graph passes between import and code generation.

``simplify_for_inference`` folds BatchNorm into the convolutions (weights scaled, a bias added)
and evaluates everything that depends only on constants, so that the built module computes no
per-element subtract/divide/multiply at run time. ``legalize_and_fuse`` turns Relax operators into fused TIR
kernels (the tasks tuning works on); ``schedule`` applies tuning records and gives every other
kernel a default schedule; ``lower`` is what ``tvm.compile`` then runs down to the Relax VM.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tvm

#: Relax operators that would mean BatchNorm (or another affine map) is computed at run time.
RUNTIME_ARITHMETIC_OPS = frozenset({"relax.nn.batch_norm", "relax.subtract", "relax.divide", "relax.multiply", "relax.sqrt", "relax.rsqrt"})


def simplify_for_inference(mod: tvm.IRModule) -> tvm.IRModule:
    """Fold BatchNorm into convolutions, decompose what is left, evaluate constant expressions."""
    import tvm
    from tvm import relax

    return tvm.transform.Sequential(
        [
            relax.transform.FoldConstant(),  # e.g. an ONNX conv bias reshaped to (1, C, 1, 1)
            fold_batchnorm_into_conv2d(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            relax.transform.FoldConstant(),
            fold_exported_graph(),
            relax.transform.DeadCodeElimination(),
        ]
    )(mod)


def fold_exported_graph() -> tvm.transform.Pass:
    """What a TensorFlow export leaves around its convolutions (NCHW, before the layout
    conversion), folded into them so that it builds to the built-in network's kernels:

    * ``multiply`` / ``add`` by per-channel constants after a convolution (the part of BatchNorm
      tf2onnx leaves as ``Mul``/``Add``) → the convolution's weights and bias;
    * a zero ``nn.pad`` of height and width before a convolution (Keras' ``ZeroPadding2D`` before
      each stride-2 depthwise layer) → the convolution's padding;
    * a 1×1 convolution on a 1×1 map that is then flattened (Keras' classifier, in ONNX or
      TFLite) → a matrix product,
      the built-in network's classifier kernel (our pointwise schedule is for maps of many pixels).

    Only float32 graphs are rewritten: the int8 graph is built in its final form (quantize.py).
    """
    import numpy as np
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, wildcard

    def const(expr) -> np.ndarray:
        return expr.value.numpy()

    def per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
        """A constant that an NCHW (N, K, H, W) tensor is multiplied by or added to, as K values;
        None where it varies along another axis."""
        if value.ndim > 4:
            return None
        shape = (1,) * (4 - value.ndim) + value.shape
        if shape[0] != 1 or shape[2] != 1 or shape[3] != 1 or shape[1] not in (1, channels):
            return None
        return np.broadcast_to(value.reshape(-1), (channels,))

    def nchw(call) -> bool:  # a float NCHW convolution: what the ONNX frontend makes
        layouts = call.attrs["data_layout"] == "NCHW" and call.attrs["kernel_layout"] == "OIHW" and call.attrs["out_layout"] in ("", "NCHW")
        return layouts and str(call.ty.dtype) == "float32"

    data, weight, bias, factor, addend = wildcard(), is_const(), is_const(), is_const(), is_const()
    conv = is_op("relax.nn.conv2d")(data, weight)
    biased = is_op("relax.add")(conv, bias)
    scaled = is_op("relax.multiply")(conv | biased, factor)
    shifted = is_op("relax.add")(biased, addend)

    def fold_scale(expr, matches):
        call = matches[conv]
        k = int(call.ty.shape[1])
        s = per_channel(const(matches[factor]), k)
        if s is None or not nchw(call) or str(matches[factor].ty.dtype) != str(call.ty.dtype):
            return expr
        w = const(matches[weight])
        out = relax.Call(call.op, (matches[data], relax.const((w * s.reshape(-1, 1, 1, 1)).astype(w.dtype))), call.attrs)
        if biased in matches:
            b = per_channel(const(matches[bias]), k)
            if b is None:
                return expr
            out = relax.op.add(out, relax.const((b * s).reshape(1, -1, 1, 1).astype(w.dtype)))
        return out

    def fold_shift(expr, matches):
        call = matches[conv]
        k = int(call.ty.shape[1])
        b, c = per_channel(const(matches[bias]), k), per_channel(const(matches[addend]), k)
        if b is None or c is None or not nchw(call):
            return expr
        return relax.op.add(matches[conv], relax.const((b + c).reshape(1, -1, 1, 1).astype(const(matches[bias]).dtype)))

    padded_input = wildcard()
    pad = is_op("relax.nn.pad")(padded_input)
    conv_of_pad = is_op("relax.nn.conv2d")(pad, weight)

    def fold_pad(expr, matches):
        call, pad_call = matches[conv_of_pad], matches[pad]
        width = [int(v) for v in pad_call.attrs["pad_width"]]
        if pad_call.attrs["pad_mode"] != "constant" or float(pad_call.attrs["pad_value"]) != 0.0 or not nchw(call) or any(width[:4]):
            return expr
        top, left, bottom, right = (int(v) for v in call.attrs["padding"])
        padding = [top + width[4], left + width[6], bottom + width[5], right + width[7]]
        a = call.attrs
        return relax.op.nn.conv2d(matches[padded_input], matches[weight], strides=a["strides"], padding=padding, dilation=a["dilation"],
                                  groups=int(a["groups"]), data_layout="NCHW", kernel_layout="OIHW", out_dtype=a["out_dtype"])  # fmt: skip

    classifier_bias = is_const()
    classifier = is_op("relax.add")(conv, classifier_bias) | conv
    # Only the classifier: its 1×1 map is flattened after it, where a 1×1 map inside the network
    # (the last blocks at resolution 32) goes on to a ReLU and stays a pointwise convolution.
    flattened = is_op("relax.reshape")(classifier, wildcard())

    def conv_to_matmul(expr, matches):
        call = matches[conv]
        layouts = (call.attrs["data_layout"], call.attrs["kernel_layout"], call.attrs["out_layout"] or call.attrs["data_layout"])
        if layouts not in (("NCHW", "OIHW", "NCHW"), ("NHWC", "HWIO", "NHWC")) or int(call.attrs["groups"]) != 1:
            return expr
        if str(call.ty.dtype) != "float32":  # the int8 graph's classifier is ours already (compiler/quantize.py)
            return expr
        channels_last = layouts[0] == "NHWC"  # a TFLite file's classifier
        shape = [int(d) for d in matches[data].ty.shape]
        n, c, spatial = (shape[0], shape[3], shape[1:3]) if channels_last else (shape[0], shape[1], shape[2:])
        wt = const(matches[weight])
        if spatial != [1, 1] or any(int(p) for p in call.attrs["padding"]) or wt.size != int(call.ty.shape[3 if channels_last else 1]) * c:
            return expr
        k = wt.size // c
        matrix = wt.reshape(c, k) if channels_last else wt.reshape(k, c).T  # HWIO (1, 1, C, K) or OIHW (K, C, 1, 1)
        y = relax.op.matmul(relax.op.reshape(matches[data], (n, c)), relax.const(np.ascontiguousarray(matrix)))
        if classifier_bias in matches:
            bias = const(matches[classifier_bias])
            b = bias.reshape(-1) if channels_last and bias.size == k else per_channel(bias, k)
            if b is None:
                return expr
            y = relax.op.add(y, relax.const(np.broadcast_to(b, (k,)).astype(wt.dtype).copy()))
        return relax.op.reshape(y, [int(d) for d in matches[flattened].ty.shape])

    reshaped = wildcard()
    reshape = is_op("relax.reshape")(reshaped, wildcard())

    def drop_identity_reshape(expr, matches):  # Keras' Reshape((1, 1, C)) after its pooling
        same = [int(d) for d in matches[reshape].ty.shape] == [int(d) for d in matches[reshaped].ty.shape]
        return matches[reshaped] if same else expr

    return _rewrite_pass("FoldExportedGraph", [(conv_of_pad, fold_pad), (scaled, fold_scale), (shifted, fold_shift), (scaled, fold_scale),
                                               (shifted, fold_shift), (reshape, drop_identity_reshape), (flattened, conv_to_matmul)])  # fmt: skip


def _rewrite_pass(name: str, rules) -> tvm.transform.Pass:
    """A module pass applying ``rules`` ((pattern, rewrite) pairs, in order) to every Relax function."""
    import tvm
    from tvm import relax
    from tvm.relax.dpl import rewrite_call

    @tvm.transform.module_pass(opt_level=0, name=name)
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                for pattern, rewrite in rules:
                    func = rewrite_call(pattern, rewrite, func)
                mod[gvar] = func
        return mod

    return _pass


def cancel_inverse_transposes() -> tvm.transform.Pass:
    """``permute_dims(permute_dims(x, p), q)`` where ``q`` undoes ``p`` → ``x``: a TensorFlow
    export's NHWC input, transposed to NCHW for the ONNX convolutions and back to NHWC by the
    layout conversion."""
    from tvm.relax.dpl import is_op, wildcard

    x = wildcard()
    inner = is_op("relax.permute_dims")(x)
    outer = is_op("relax.permute_dims")(inner)

    def rewrite(expr, matches):
        p, q = matches[inner].attrs["axes"], matches[outer].attrs["axes"]
        if p is None or q is None:
            return expr
        p, q = [int(a) for a in p], [int(a) for a in q]
        return matches[x] if [p[i] for i in q] == list(range(len(p))) else expr

    return _rewrite_pass("CancelInverseTransposes", [(outer, rewrite)])


def fold_batchnorm_into_conv2d() -> tvm.transform.Pass:
    """``batch_norm(conv2d(x, W) [+ c])`` with constant W, c and statistics → ``conv2d(x, W') + b'``.

    The same rewrite as TVM's ``FoldBatchnormToConv2D`` (which misses a convolution with a bias,
    as ONNX files have), but the folded weights are computed here with NumPy instead of emitted as
    Relax arithmetic: ``FoldConstant`` would otherwise compile and run a TIR kernel for each of the
    ~200 constant sub-expressions (8 s for MobileNet).
    """
    import numpy as np
    import tvm
    from tvm import relax
    from tvm.relax.dpl import TupleGetItemPattern, is_const, is_op, wildcard

    data, weight, conv_bias = wildcard(), is_const(), is_const()
    conv = is_op("relax.nn.conv2d")(data, weight)
    biased = is_op("relax.add")(conv, conv_bias)
    gamma, beta, mean, var = is_const(), is_const(), is_const(), is_const()
    bn = is_op("relax.nn.batch_norm")(conv | biased, gamma, beta, mean, var)
    pattern = TupleGetItemPattern(bn, 0)

    def rewrite(expr, matches):
        conv_call, bn_call = matches[conv], matches[bn]
        out_channels = int(conv_call.ty.shape[1])
        if conv_call.attrs["kernel_layout"] != "OIHW" or int(bn_call.attrs["axis"]) != 1:
            return expr
        w = matches[weight].value.numpy().astype(np.float64)
        g, b, m, v = (matches[p].value.numpy().astype(np.float64) for p in (gamma, beta, mean, var))
        if biased in matches:
            c = matches[conv_bias].value.numpy().astype(np.float64)
            if c.size != out_channels:
                return expr
            m = m - c.reshape(-1)
        scale = g / np.sqrt(v + float(bn_call.attrs["epsilon"]))
        dtype = matches[weight].value.dtype
        folded_w = relax.const((w * scale.reshape(-1, 1, 1, 1)).astype(dtype))
        folded_b = relax.const((b - m * scale).reshape(1, -1, 1, 1).astype(dtype))
        return relax.op.add(relax.Call(conv_call.op, (matches[data], folded_w), conv_call.attrs), folded_b)

    return _rewrite_pass("FoldBatchnormIntoConv2D", [(pattern, rewrite)])


def relax_op_counts(mod: tvm.IRModule) -> Counter:
    """How many calls of each Relax operator the module's Relax functions make."""
    import tvm
    from tvm import relax

    counts: Counter = Counter()

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.op.name] += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return counts


def legalize_and_fuse(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Relax operators → TIR kernels, fused (conv + bias + ReLU become one kernel).

    Weights are constants, so they are marked layout-free: a tuned kernel may ask for any weight
    layout (MetaSchedule's RewriteLayout) and :func:`schedule` repacks them once, at compile time.
    TVM's CPU legalisation passes serve CUDA too: its CUDA list is the same plus DLight's default
    schedules, which :func:`schedule` applies after ours.
    """
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    from tvmc_mobilenet.schedules import annotate_design_spaces

    allow_vectorized_nearbyint()
    with target:
        passes = [convert_conv_layout(target)]
        passes += cpu_generic.library_dispatch_passes(target) + cpu_generic.legalize_passes(target)
        if target.kind.name == "llvm":  # TVM's LegalizeOps, with the softmax's exp vectorised
            passes = [legalize_with_fast_softmax() if p.info.name == "LegalizeOps" else p for p in passes]
        passes.append(relax.transform.AttachAttrLayoutFreeBuffers())
        passes.append(annotate_design_spaces(target))
        return tvm.transform.Sequential(passes)(mod)


def legalize_with_fast_softmax() -> tvm.transform.Pass:
    """TVM's ``LegalizeOps``, a float32 softmax going to TOPI's ``fast_softmax``: its ``exp`` is a
    polynomial LLVM vectorises, where ``expf`` stays a call per element (no vector math library
    here; 1,000 calls, most of a 6 µs classifier softmax). Same accuracy on logits from ±1 to
    ±50: within 2e-6 of the largest probability, as the exact one (tests/schedules/cpu/test_generic.py)."""
    from tvm import relax, topi

    def fast_softmax(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        if call.ty.dtype != "float32":
            return bb.call_te(topi.nn.softmax, call.args[0], call.attrs.axis)
        return bb.call_te(topi.nn.fast_softmax, call.args[0], call.attrs.axis, primfunc_name_hint="softmax")

    return relax.transform.LegalizeOps({"relax.nn.softmax": fast_softmax})


def allow_vectorized_nearbyint() -> None:
    """Let TVM vectorize ``nearbyint`` (round half to even), which Relax's ``round`` legalizes to
    and the int8 requantization uses. TVM 0.27 marks ``tirx.round`` vectorizable but not
    ``tirx.nearbyint``, though both lower to LLVM's ``llvm.nearbyint``; without the mark a
    vectorized epilogue falls back to a scalar loop (gathers and byte stores, 7× slower on the
    first depthwise layer)."""
    import tvm

    op = tvm.ir.Op.get("tirx.nearbyint")
    if not op.get_attr("TVectorizable"):
        tvm.ir.register_op_attr("tirx.nearbyint", "TVectorizable", True)


def convert_conv_layout(target: tvm.target.Target) -> tvm.transform.Pass:
    """Every convolution into the layout the target's schedules are written for, chosen once for
    the whole network: the feature maps are transposed at its input and before the classifier
    only (see :func:`layout_transform_count`); the weights are transposed here, at compile time."""
    import tvm
    from tvm import relax

    from tvmc_mobilenet.schedules import CONV_LAYOUTS

    layouts = CONV_LAYOUTS.get(target.kind.name)
    if layouts is None:
        return tvm.transform.Sequential([])
    return tvm.transform.Sequential(
        [relax.transform.ConvertLayout({"relax.nn.conv2d": list(layouts)}), cancel_inverse_transposes(), relax.transform.FoldConstant()]
    )


def layout_transform_count(mod: tvm.IRModule) -> int:
    """Layout changes of feature maps left in a Relax module (transposes and layout_transforms)."""
    counts = relax_op_counts(mod)
    return counts["relax.permute_dims"] + counts["relax.layout_transform"]


def schedule(fused: tvm.IRModule, target: tvm.target.Target, database=None) -> tvm.IRModule:
    """Give every kernel of a fused module its schedule.

    Kernels found in ``database`` (a MetaSchedule database) take their tuned schedule; a tuned
    kernel that chose its own weight layout comes with a repacking step, which is split out and
    evaluated on the constant weights here, not at every run. The remaining kernels get the
    default schedules of :mod:`tvmc_mobilenet.schedules`.
    """
    import contextlib

    import tvm
    from tvm import relax

    from tvmc_mobilenet.schedules import default_schedule_pass

    with target, database if database is not None else contextlib.nullcontext():
        passes = []  # made inside the context: MetaScheduleApplyDatabase reads the current target
        if database is not None:
            passes.append(relax.transform.MetaScheduleApplyDatabase(enable_warning=False))
        passes += [
            default_schedule_pass(target),
            # Weight repacking (a tuned kernel's, or a default schedule's such as the VNNI one) split
            # out and evaluated on the constant weights at compile time.
            relax.transform.SplitLayoutRewritePreproc(),
            relax.transform.FoldConstant(),
        ]
        return tvm.transform.Sequential(passes)(fused)


def lower(target: tvm.target.Target) -> tvm.transform.Pass:
    """The Relax pipeline after :func:`schedule`, for ``tvm.compile``: lower to the Relax VM
    (TVM's CPU or CUDA backend passes; the CUDA ones may capture the model in a CUDA graph)."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    from tvm.relax.backend.cuda import pipeline as cuda

    backend = cuda if target.kind.name == "cuda" else cpu_generic
    return tvm.transform.Sequential(backend.dataflow_lower_passes(target) + backend.finalize_passes(target))


def kernel_calls(mod: tvm.IRModule) -> dict[str, int]:
    """How many times the Relax functions call each TIR kernel (``call_tir``)."""
    import tvm
    from tvm import relax

    counts: Counter = Counter()
    call_tir = tvm.ir.Op.get("relax.call_tir")

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
            counts[expr.args[0].name_hint] += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return dict(counts)
