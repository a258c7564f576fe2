"""The ``tvmc-mobilenet`` command line: parse, call one library function, print.

No TVM or torch import happens at module level, so ``--help`` answers at once. Errors the user can
fix (:class:`TvmcMobilenetError`, click's usage errors) become one line on stderr and a non-zero
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
import click

from tvmc_mobilenet import __version__
from tvmc_mobilenet.errors import ArtifactError, TvmcMobilenetError

FILE = click.Path(dir_okay=False, path_type=Path)
CUDA_COMPILER_OPTION = click.option(
    "--cuda-compiler",
    type=click.Choice(["nvcc", "nvrtc"]),
    help="What compiles a CUDA target's kernels: nvcc (SASS + PTX), or CUDA 11.8's NVRTC (a cubin for CUDA 11 drivers, "
    "e.g. JetPack 5). Default: nvcc where it targets the GPU, else NVRTC 11.8.",
)
VARIANTS = ["mobilenet", "full-conv", "shallow"]


def _console(stderr: bool = False):
    """Rich console; when output is not a terminal, lines are not wrapped at 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=width is not None)


def _model_options(func):
    """--alpha, --resolution, --variant, --classes: the network's shape."""
    func = click.option("--classes", "num_classes", type=int, default=1000, show_default=True, help="Number of output classes.")(func)
    func = click.option(
        "--variant",
        type=click.Choice(VARIANTS),
        default="mobilenet",
        show_default=True,
        help="The paper's network, or its full-conv (Table 4) / shallow (Table 5) variant.",
    )(func)
    func = click.option(
        "--resolution",
        "-r",
        type=int,
        default=224,
        show_default=True,
        help="Input resolution: a multiple of 32 from 32 to 512 (ρ = resolution/224).",
    )(func)
    func = click.option("--alpha", "-a", type=float, default=1.0, show_default=True, help="Width multiplier α in (0, 1].")(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tvmc-mobilenet")
@click.option("-v", "--verbose", count=True, help="Show the library's and TVM's log messages.")
def cli(verbose: int) -> None:
    """Compile MobileNet v1 (width α, resolution ρ) with Apache TVM for edge devices."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    # MetaSchedule prints its task tables to stdout unless its logger has a level.
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.INFO if verbose else logging.WARNING)


@cli.command()
@_model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def info(alpha: float, resolution: int, variant: str, num_classes: int, as_json: bool) -> None:
    """Per-layer Mult-Adds and parameters, totals, and shares by layer type."""
    from tvmc_mobilenet.model.cost import model_cost
    from tvmc_mobilenet.model.spec import ModelConfig

    cost = model_cost(ModelConfig(alpha=alpha, resolution=resolution, variant=variant, num_classes=num_classes))
    if as_json:
        click.echo(json.dumps(cost.to_json(), indent=2))
        return
    from rich.table import Table

    console = _console()
    layers = Table(title=f"{cost.config.name}  (α={alpha:g}, ρ={cost.config.rho:.3f})")
    for col in ("layer", "type", "input", "output", "kernel/stride", "Mult-Adds", "params"):
        layers.add_column(col, justify="right" if col in ("Mult-Adds", "params") else "left")
    for layer in cost.layers:
        layers.add_row(
            layer.name,
            layer.kind.value,
            f"{layer.in_size}×{layer.in_size}×{layer.in_channels}",
            f"{layer.out_size}×{layer.out_size}×{layer.out_channels}",
            f"{layer.kernel}×{layer.kernel} /s{layer.stride}",
            f"{layer.mult_adds:,}",
            f"{layer.params:,}",
        )
    console.print(layers)
    shares = Table(title="Shares by layer type")
    for col in ("type", "Mult-Adds", "% Mult-Adds", "params", "% params"):
        shares.add_column(col, justify="left" if col == "type" else "right")
    for s in cost.shares():
        shares.add_row(s.kind.value, f"{s.mult_adds:,}", f"{s.mult_adds_share:.2f}%", f"{s.params:,}", f"{s.params_share:.2f}%")
    shares.add_row("total", f"{cost.mult_adds:,}", "100%", f"{cost.params:,}", "100%", style="bold")
    console.print(shares)
    console.print(f"Total: {cost.mult_adds / 1e6:.1f}M Mult-Adds, {cost.params / 1e6:.2f}M parameters")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def targets(as_json: bool) -> None:
    """The target registry: names, TVM targets, compilers, RPC keys."""
    from tvmc_mobilenet.targets.registry import TARGETS

    if as_json:
        click.echo(json.dumps([t.to_json() for t in TARGETS], indent=2))
        return
    from rich.table import Table

    table = Table(title="Targets (any TVM tag or JSON target dict works too; --json shows the TVM targets)")
    for col in ("name", "description", "compilers", "RPC key", "status"):
        table.add_column(col, no_wrap=col != "description")
    for t in TARGETS:
        names = ", ".join((t.name, *t.aliases))
        status = "ready" if t.unsupported_reason is None else "not yet"
        compilers = (_gpu_compiler_label(t) + " + " if t.device.value == "cuda" else "") + (t.cross_compiler or "g++")
        table.add_row(names, t.description, compilers, t.rpc_key or "-", status)
    _console().print(table)


def _gpu_compiler_label(spec) -> str:
    """What would compile this CUDA target's kernels here: nvcc, NVRTC 11.8, or nothing yet."""
    from tvmc_mobilenet.errors import TargetError
    from tvmc_mobilenet.targets.registry import resolve_target
    from tvmc_mobilenet.targets.toolchain import cuda_compiler_for

    arch = resolve_target(spec.name).target_json.get("arch")
    if not arch:
        return "nvcc"  # the local GPU's architecture: unknown without one
    try:
        return cuda_compiler_for(str(arch)).label
    except TargetError:
        return "nvcc (missing)"


@cli.command()
@_model_options
@click.option("--batch", "-b", type=int, default=1, show_default=True, help="Batch size (1 to 1024).")
@click.option("--target", "-t", default="host", show_default=True, help="Registry name (see 'targets'), TVM tag, or JSON target dict.")
@click.option("--arch", "cuda_arch", metavar="sm_XX", help="GPU architecture of a CUDA target (default: the target's, or the local GPU's).")
@CUDA_COMPILER_OPTION
@click.option("--model", "model_file", type=FILE, help="Build a user's ONNX file instead of the built-in network.")
@click.option("--weights", type=FILE, help="PyTorch state_dict for the built-in network (default: random weights).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights and reference input.")
@click.option(
    "--tuning-db",
    type=click.Path(file_okay=False, path_type=Path),
    help="MetaSchedule database to apply (default: the target's own, if tuned).",
)
@click.option("--no-tuning-db", is_flag=True, help="Ignore tuning databases: build with default schedules only.")
@click.option("--no-verify", is_flag=True, help="Do not compare the module with the framework's output.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Artifact file (default: NAME-TARGET.tar here).")
def build(alpha, resolution, variant, num_classes, batch, target, cuda_arch, cuda_compiler, model_file, weights, seed, tuning_db,
          no_tuning_db, no_verify, output):  # fmt: skip
    """Compile a MobileNet (or an ONNX file) into a verified artifact."""
    from tvmc_mobilenet.compiler.build import BuildConfig, build_model

    config = BuildConfig(
        alpha=alpha,
        resolution=resolution,
        variant=variant,
        batch=batch,
        num_classes=num_classes,
        target=target,
        cuda_arch=cuda_arch,
        cuda_compiler=cuda_compiler,
        model_file=model_file,
        weights=weights,
        seed=seed,
        tuning_db=tuning_db,
        no_tuning_db=no_tuning_db,
        output=output,
        verify=not no_verify,
    )
    err = _console(stderr=True)
    err.print(f"[dim]{config}[/dim]")
    with err.status("building…") as status:

        def log(message: str) -> None:
            status.update(message + "…")
            err.print(f"• {message}")

        result = build_model(config, log=log)
    v = result.verification
    console = _console()
    if v["status"] == "passed":
        console.print(
            f"[green]verified[/green] against {v['reference']}: max abs error {v['max_abs_error']:.3g} "
            f"(relative {v['max_rel_error']:.3g}, tolerance {v['tolerance']:g})"
        )
    else:
        console.print(f"[yellow]not verified[/yellow]: {v['reason']}")
    console.print(f"artifact: {result.artifact_path}  ({result.manifest['build']['seconds']:.1f} s)")


@cli.command()
@_model_options
@click.option("--batch", "-b", type=int, default=1, show_default=True, help="Batch size (1 to 1024).")
@click.option("--target", "-t", default="host", show_default=True, help="Registry name, TVM tag, or JSON target dict.")
@click.option("--arch", "cuda_arch", metavar="sm_XX", help="GPU architecture of a CUDA target (default: the target's, or the local GPU's).")
@CUDA_COMPILER_OPTION
@click.option("--model", "model_file", type=FILE, help="Tune a user's ONNX file instead of the built-in network.")
@click.option(
    "--trials",
    type=int,
    default=1000,
    show_default=True,
    help="Total trials for this model's tasks, counting those already in the database.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Tuning database directory (default: one per target under the user's cache directory).",
)
@click.option(
    "--tasks",
    "task_kinds",
    default="all",
    show_default=True,
    help="Task kinds to tune: all, or a comma-separated list of depthwise, pointwise, conv, dense, pool, other.",
)
@click.option("--resume", is_flag=True, help="Continue an earlier tune of this work dir to the requested total.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds a candidate may take to build or run.")
@click.option("--seed", type=int, default=None, help="Seed of the search (default: random).")
@click.option("--rpc-tracker", metavar="HOST[:PORT]", help="Measure on boards registered with this TVM RPC tracker.")
@click.option("--rpc-key", metavar="KEY", help="The boards' key at the tracker (e.g. rasp4b).")
@click.option(
    "--space",
    type=click.Choice(["ours", "generic"]),
    default="ours",
    show_default=True,
    help="Design space for pointwise and depthwise kernels: ours, or MetaSchedule's generic one.",
)
def tune(alpha, resolution, variant, num_classes, batch, target, cuda_arch, cuda_compiler, model_file, trials, work_dir, task_kinds, resume,
         timeout, seed, rpc_tracker, rpc_key, space):  # fmt: skip
    """Auto-schedule a model's kernels with MetaSchedule into the target's tuning database."""
    from tvmc_mobilenet.compiler.tune import TuneConfig, tune_model

    config = TuneConfig(
        alpha=alpha,
        resolution=resolution,
        variant=variant,
        num_classes=num_classes,
        batch=batch,
        model_file=model_file,
        target=target,
        cuda_arch=cuda_arch,
        cuda_compiler=cuda_compiler,
        trials=trials,
        work_dir=work_dir,
        tasks=task_kinds,
        rpc_tracker=rpc_tracker,
        rpc_key=rpc_key,
        resume=resume,
        timeout=timeout,
        search_seed=seed,
        space=space,
    )
    err = _console(stderr=True)
    err.print(f"[dim]{config}[/dim]")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("tuning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials"),
        TextColumn("{task.fields[tasks]}"),
        TextColumn("{task.fields[estimate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        bar_id = None

        def on_progress(p) -> None:
            nonlocal bar_id
            estimate = f"best est. {p.estimated_latency_ms:.2f} ms" if p.estimated_latency_ms else "best est. -"
            tasks = f"tasks {p.tasks_measured}/{p.tasks_total}"
            if bar_id is None:
                bar_id = bar.add_task("tune", total=p.trials_total, tasks=tasks, estimate=estimate)
            bar.update(bar_id, completed=p.trials_done, tasks=tasks, estimate=estimate)

        result = tune_model(config, log=lambda m: err.print(f"• {m}"), on_progress=on_progress)
    _print_tune_report(result)


def _print_tune_report(result) -> None:
    from rich.table import Table

    table = Table(title=f"Tuned tasks of {result.model['name']} on {result.target}")
    for col in ("task", "kind", "shape", "space", "MFLOP", "weight", "best ms", "GFLOP/s", "trials"):
        table.add_column(col, justify="left" if col in ("task", "kind", "shape", "space") else "right")
    for o in sorted(result.outcomes, key=lambda o: -(o.task.weight * (o.best_seconds or 0))):
        table.add_row(
            o.task.name,
            o.task.kind.value,
            o.task.shape,
            result.space_of(o.task),
            f"{o.task.flops / 1e6:.2f}",
            str(o.task.weight),
            f"{o.best_seconds * 1e3:.4f}" if o.best_seconds else "-",
            f"{o.gflops:.1f}" if o.gflops else "-",
            f"{o.trials} (+{o.trials - o.trials_before})",
        )
    console = _console()
    console.print(table)
    estimate = result.estimated_latency_ms
    console.print(
        f"{result.trials_run} trials in {result.seconds:.0f} s ({result.trials_per_minute:.1f}/min); "
        f"estimated end-to-end latency {f'{estimate:.3f} ms' if estimate else 'unknown (some tasks unmeasured)'}; "
        f"database {result.work_dir}, report {result.work_dir / 'tuning_report.json'}"
    )


def _rpc_options(func):
    """--rpc-tracker/--rpc-key or --rpc-host/--rpc-port: run on a remote device over TVM RPC."""
    options = [
        click.option("--rpc-tracker", metavar="HOST[:PORT]", help="TVM RPC tracker (port 9190 by default)."),
        click.option("--rpc-key", metavar="KEY", help="Device key at the tracker (e.g. rasp4b)."),
        click.option("--rpc-host", metavar="HOST", help="An RPC server's address, without a tracker."),
        click.option("--rpc-port", type=click.IntRange(1, 65535), metavar="PORT", help="The RPC server's port."),
        click.option("--rpc-timeout", type=click.FloatRange(1, 86400), default=600, show_default=True,
                     help="Seconds one remote step (upload, load, a timing run) may take."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _load(artifact_path: Path, rpc_tracker=None, rpc_key=None, rpc_host=None, rpc_port=None, rpc_timeout=600.0):
    """Open the artifact and load it locally, or on the remote device the RPC options name."""
    from tvmc_mobilenet.runtime.artifact import open_artifact
    from tvmc_mobilenet.runtime.executor import load_local, load_remote
    from tvmc_mobilenet.runtime.rpc import RpcTarget

    rpc = RpcTarget.from_options(rpc_tracker, rpc_key, rpc_host, rpc_port, call_timeout=rpc_timeout)
    artifact = open_artifact(artifact_path)
    if rpc is None:
        return artifact, load_local(artifact), "local"
    return artifact, load_remote(artifact, rpc), rpc.describe()


@cli.command()
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input", "input_file", type=FILE, help="Input tensor (.npy); default: the artifact's reference input.")
@click.option("--output", "output_file", type=click.Path(dir_okay=False, path_type=Path), help="Save the logits here (.npy).")
@click.option("--top", type=click.IntRange(1, 100), default=5, show_default=True, help="How many classes to print.")
@_rpc_options
def run(artifact: Path, input_file: Path | None, output_file: Path | None, top: int, **rpc) -> None:
    """Run an artifact once and print the top classes."""
    import numpy as np

    from tvmc_mobilenet.runtime.executor import check_against_reference
    from tvmc_mobilenet.runtime.results import load_input, save_array, top_classes

    art, model, _where = _load(artifact, **rpc)
    data = load_input(input_file) if input_file else art.reference_input()
    logits = model.run(data)
    console = _console()
    for image, classes in enumerate(top_classes(logits, top)):
        line = ", ".join(f"{c}: {p:.3f}" for c, p in classes)
        console.print(f"image {image}: top-{top} classes (class: probability) {line}")
    if input_file is None:
        cmp = check_against_reference(logits, art)
        console.print(f"[green]matches[/green] the reference output (max abs error {cmp.max_abs_error:.3g})")
    if output_file:
        save_array(output_file, np.asarray(logits))
        console.print(f"logits saved to {output_file}")


@cli.command()
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repeat", type=click.IntRange(1, 100000), default=20, show_default=True, help="Timed samples.")
@click.option("--number", type=click.IntRange(1, 100000), default=10, show_default=True, help="Runs averaged per sample.")
@click.option("--warmup", type=click.IntRange(0, 100000), default=5, show_default=True, help="Untimed runs first.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON here.")
@click.option("--profile", is_flag=True, help="Also time each kernel alone: a per-layer table of where the time goes.")
@_rpc_options
def bench(artifact: Path, repeat: int, number: int, warmup: int, json_file: Path | None, profile: bool, **rpc) -> None:
    """Time an artifact, here or on a remote device: median, mean, p90, std (warm-up excluded).

    The device's output for the stored reference input is checked first; a mismatch fails.
    """
    from tvmc_mobilenet.runtime.executor import verify_on_reference
    from tvmc_mobilenet.runtime.results import bench_report, write_json

    art, model, where = _load(artifact, **rpc)

    comparison = verify_on_reference(model, art)
    stats = model.time(art.reference_input(), number=number, repeat=repeat, warmup=warmup)
    report = bench_report(art, stats, comparison, where=where)
    console = _console()
    if profile:
        kernels = art.manifest.get("kernels")
        if not kernels:
            raise ArtifactError(f"artifact {str(artifact)!r} has no kernel table (built by an older version); rebuild it to profile")
        rows = model.profile(kernels)
        report["profile"] = [r.to_json() for r in rows]
        _print_profile(rows)
    batch = art.input_shape[0]
    console.print(
        f"{art.manifest['model'].get('name', art.path.stem)} on {art.target_name} ({where}): "
        f"median {stats.median_ms:.3f} ms, mean {stats.mean_ms:.3f} ms, p90 {stats.p90_ms:.3f} ms, "
        f"std {stats.std_ms:.3f} ms over {stats.repeat}×{stats.number} runs; "
        f"{1000.0 * batch / stats.median_ms:.1f} images/s"
    )
    if json_file:
        write_json(json_file, report)
        console.print(f"results written to {json_file}")


def _print_profile(rows) -> None:
    from rich.table import Table

    table = Table(title="Per-kernel profile (each kernel timed alone, random inputs)")
    for col in ("kernel", "kind", "shape", "calls", "ms/call", "ms total", "share"):
        table.add_column(col, justify="left" if col in ("kernel", "kind", "shape") else "right")
    for r in rows:
        table.add_row(r.name, r.kind, r.shape, str(r.calls), f"{r.mean_ms:.4f}", f"{r.total_ms:.4f}", f"{r.share:.1f}%")
    _console().print(table)


@cli.command()
@click.option("--target", "-t", default="host", show_default=True, help="Registry name, TVM tag, or JSON target dict.")
@click.option("--arch", "cuda_arch", metavar="sm_XX", help="GPU architecture of a CUDA target.")
@CUDA_COMPILER_OPTION
@click.option("--alphas", default="1,0.75,0.5,0.25", show_default=True, help="Width multipliers, comma-separated.")
@click.option("--resolutions", default="224,192,160,128", show_default=True, help="Resolutions, comma-separated.")
@click.option("--trials-per-model", type=int, default=0, show_default=True, help="Tuning trials per model (0: untuned).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sweep"),
    show_default=True,
    help="Directory for sweep.json/.csv, plots, report.md, artifacts and the shared tuning database.",
)
@click.option("--repeat", type=click.IntRange(1, 10000), default=10, show_default=True, help="Timed samples per model.")
@click.option("--number", type=click.IntRange(1, 10000), default=5, show_default=True, help="Runs per sample.")
@click.option(
    "--rounds",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Timing rounds over the whole grid; each model keeps its fastest round (other load on the machine only adds time).",
)
@_rpc_options
def sweep(target, cuda_arch, cuda_compiler, alphas, resolutions, trials_per_model, out, repeat, number, rounds, **rpc):
    """Build (and tune) every α × resolution model, measure them on the target, report the trade-off.

    Builds are recorded after every model; run the same command again to resume (built models are
    kept, all are measured again).
    """
    from tvmc_mobilenet.sweep.run import SweepConfig, parse_list, run_sweep

    config = SweepConfig(
        target=target,
        cuda_arch=cuda_arch,
        cuda_compiler=cuda_compiler,
        alphas=parse_list(alphas, float, "--alphas"),
        resolutions=parse_list(resolutions, int, "--resolutions"),
        trials_per_model=trials_per_model,
        out=out,
        repeat=repeat,
        number=number,
        rounds=rounds,
        **rpc,
    )
    err = _console(stderr=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[now]}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:  # the log lines and the table stay
        bar_id = bar.add_task("sweep", total=len(config.grid), now="")

        def on_progress(p) -> None:
            bar.update(bar_id, completed=p.index, now=f"{p.name}: {p.stage}")

        result = run_sweep(config, log=lambda m: err.print(f"• {m}"), on_progress=on_progress)
        bar.update(bar_id, completed=len(config.grid), now="done")
    _print_sweep(result)


def _print_sweep(result) -> None:
    from rich.table import Table

    from tvmc_mobilenet.sweep.report import TABLE_HEADER, table_rows

    table = Table(title=f"MobileNet v1 on {result.config.target} (top-1: published; * TF-slim release)")
    for col in TABLE_HEADER:
        table.add_column(col, justify="right")
    for cells in table_rows(result):
        table.add_row(*cells)
    console = _console()
    console.print(table)
    if result.transfer:
        t = result.transfer
        console.print(
            f"tuning shared across the grid: {t['distinct_tasks']} distinct tasks among {t['tasks_summed_over_models']}; "
            f"{t['trials_reused_from_other_models']} trials reused (~{t['estimated_seconds_saved']:.0f} s saved)"
        )
    console.print(f"results: {result.config.out}/sweep.json, sweep.csv, report.md (+ plots)")


@cli.group()
def device() -> None:
    """An emulated aarch64 board and TVM's RPC tracker, to try remote runs without hardware."""


LOOPBACK_WARNING = (
    "warning: listening on {host}, not only on this machine: a TVM RPC {what} runs whatever code it is "
    "sent; expose it only on a network you trust"
)


def _warn_if_exposed(host: str, what: str) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(LOOPBACK_WARNING.format(host=host, what=what), err=True)


@device.command("setup")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), help="Where to build the emulated device.")
def device_setup(root: Path | None) -> None:
    """Build the emulated aarch64 device (Debian's arm64 CPython + TVM's runtime wheels)."""
    from tvmc_mobilenet.devices.emulated import prepare_sysroot

    err = _console(stderr=True)
    sysroot = prepare_sysroot(root, log=lambda m: err.print(f"• {m}"))
    _console().print(f"emulated device: {sysroot.root} (start it with 'tvmc-mobilenet device emulate')")


@device.command("tracker")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9190, show_default=True)
def device_tracker(host: str, port: int) -> None:
    """Run TVM's RPC tracker in the foreground (Ctrl-C stops it)."""
    from tvmc_mobilenet.devices.emulated import start_tracker, stop

    _warn_if_exposed(host, "tracker")
    process = start_tracker(host, port)
    _console(stderr=True).print(f"RPC tracker on {host}:{port} (pid {process.pid}); Ctrl-C stops it")
    _wait_foreground(process, stop)


@device.command("emulate")
@click.option("--key", default="rasp4b", show_default=True, help="Key to register under at the tracker.")
@click.option("--tracker", metavar="HOST[:PORT]", default="127.0.0.1:9190", show_default=True, help="The RPC tracker.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server listens on.")
@click.option("--port", type=click.IntRange(1, 65534), default=9090, show_default=True)
@click.option("--cpu", default="cortex-a72", show_default=True, help="The CPU qemu emulates (QEMU_CPU).")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), help="The emulated device's directory.")
def device_emulate(key: str, tracker: str, host: str, port: int, cpu: str, root: Path | None) -> None:
    """Run a stock TVM RPC server on the emulated aarch64 device (qemu), registered with a tracker."""
    from tvmc_mobilenet.devices.emulated import prepare_sysroot, start_server, stop, wait_for_servers
    from tvmc_mobilenet.runtime.rpc import DEFAULT_TRACKER_PORT, parse_address

    _warn_if_exposed(host, "server")
    tracker_address = parse_address(tracker, DEFAULT_TRACKER_PORT, "--tracker")
    err = _console(stderr=True)
    sysroot = prepare_sysroot(root, log=lambda m: err.print(f"• {m}"))
    process = start_server(sysroot, key, tracker_address, host=host, port=port, cpu=cpu)
    err.print(f"emulated {cpu} device (pid {process.pid}) starting under qemu; registering as {key!r}…")
    try:
        wait_for_servers(tracker_address, key, 1, timeout=120, processes=[process])
    except BaseException:
        stop(process)
        raise
    err.print(f"registered with the tracker at {tracker_address[0]}:{tracker_address[1]}; Ctrl-C stops it")
    _wait_foreground(process, stop)


def _wait_foreground(process, stop) -> None:
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env(as_json: bool) -> None:
    """Versions of Python, TVM, tvm-ffi, torch, LLVM, nvcc and the cross compilers."""
    from tvmc_mobilenet.targets.toolchain import environment_report

    report = environment_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        click.echo(f"{key:24s} {value if value is not None else 'not found'}")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one line on stderr and a non-zero code for any user error."""
    try:
        rv = cli.main(args=argv, prog_name="tvmc-mobilenet", standalone_mode=False)
    except TvmcMobilenetError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo("error: interrupted", err=True)
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
