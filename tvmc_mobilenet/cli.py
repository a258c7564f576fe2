"""The ``tvmc-mobilenet`` command line: parse, call one library function, print.

No TVM or torch import happens at module level, so ``--help`` answers at once. Errors the user can
fix (:class:`TvmcMobilenetError`, click's usage errors) become one line on stderr and a non-zero
exit code; anything else is a bug and keeps its traceback.

Options come in groups (:mod:`tvmc_mobilenet.options`): each group is one decorator here that adds
its options to a command and hands the command one frozen dataclass built from them.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

from tvmc_mobilenet import __version__
from tvmc_mobilenet.errors import TvmcMobilenetError
from tvmc_mobilenet.model.preprocess import NORMALISATIONS
from tvmc_mobilenet.options import DEFAULT_CALIBRATION_SAMPLES, QUANTIZE_SCHEMES, ModelOptions, RpcOptions, TargetOptions, TimingOptions

FILE = click.Path(dir_okay=False, path_type=Path)
DIRECTORY = click.Path(file_okay=False, path_type=Path)
VARIANTS = ["mobilenet", "full-conv", "shallow"]
ALLOW_EMULATED_HELP = "Tune on boards that run on this machine (the emulated device) anyway: their timings are qemu's, not the board's."


def _console(stderr: bool = False):
    """Rich console; when output is not a terminal, lines are not wrapped at 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=width is not None)


def _option_group(argument: str, make: Callable[..., object], options: list[tuple[str, Callable]]):
    """A decorator that adds ``options`` ((parameter name, click.option) pairs) to a command and
    passes the command ``argument=make(**their values)`` instead of the values one by one."""

    def decorate(func):
        @functools.wraps(func)
        def command(**kwargs):
            values = {name: kwargs.pop(name) for name, _ in options}
            return func(**kwargs, **{argument: make(**values)})

        for _, option in reversed(options):
            command = option(command)
        return command

    return decorate


def _network_options() -> list[tuple[str, Callable]]:
    return [
        ("alpha", click.option("--alpha", "-a", type=float, default=1.0, show_default=True, help="Width multiplier α in (0, 1].")),
        ("resolution", click.option("--resolution", "-r", type=int, default=224, show_default=True,
                                    help="Input resolution: a multiple of 32 from 32 to 512 (ρ = resolution/224).")),
        ("variant", click.option("--variant", type=click.Choice(VARIANTS), default="mobilenet", show_default=True,
                                 help="The paper's network, or its full-conv (Table 4) / shallow (Table 5) variant.")),
        ("num_classes", click.option("--classes", "num_classes", type=int, default=1000, show_default=True, help="Output classes.")),
    ]  # fmt: skip


def network_options(func):
    """--alpha, --resolution, --variant, --classes → ``network``: a ModelConfig (batch 1)."""
    from tvmc_mobilenet.model.spec import ModelConfig

    return _option_group("network", ModelConfig, _network_options())(func)


def model_options(weights: bool):
    """The network's shape, --batch and --model; with ``weights`` also --weights and --seed →
    ``model``: a ModelOptions."""
    options = _network_options() + [
        ("batch", click.option("--batch", "-b", type=int, default=1, show_default=True, help="Batch size (1 to 1024).")),
        ("model_file", click.option("--model", "model_file", type=FILE, help="A user's ONNX or float .tflite file instead of the built-in network.")),
        ("quantize", click.option("--quantize", type=click.Choice(list(QUANTIZE_SCHEMES)),
                                  help="Post-training quantization of the built-in network (default: none, fp32).")),
        ("preprocess", click.option("--preprocess", type=click.Choice(list(NORMALISATIONS)),
                                    help="How images are normalised for the model (recorded in the artifact; used for calibration "
                                         "images). Default: tf for NHWC inputs, else torch.")),  # fmt: skip
        ("calibration", click.option("--calibration", type=click.Path(path_type=Path), metavar="PATH",
                                     help="Calibration inputs for --quantize: a folder of images or .npy arrays, or a .npy file "
                                     f"(default: {DEFAULT_CALIBRATION_SAMPLES} samples of the reference input distribution).")),
    ]  # fmt: skip
    if weights:
        options += [
            ("weights", click.option("--weights", type=FILE, help="PyTorch state_dict for the built-in network (default: random).")),
            ("seed", click.option("--seed", type=int, default=0, show_default=True, help="Seed of random weights and reference input.")),
        ]  # fmt: skip
    return _option_group("model", ModelOptions, options)


def target_options(func):
    """--target, --arch, --cuda-compiler → ``target``: a TargetOptions."""
    options = [
        ("name", click.option("--target", "-t", "name", default="host", show_default=True,
                              help="Registry name (see 'targets'), TVM tag, or JSON target dict.")),
        ("cuda_arch", click.option("--arch", "cuda_arch", metavar="sm_XX",
                                   help="GPU architecture of a CUDA target (default: the target's, or the local GPU's).")),
        ("cuda_compiler", click.option("--cuda-compiler", type=click.Choice(["nvcc", "nvrtc"]),
                                       help="What compiles a CUDA target's kernels: nvcc (SASS + PTX), or CUDA 11.8's NVRTC (a cubin for "
                                       "CUDA 11 drivers, e.g. JetPack 5). Default: nvcc where it targets the GPU, else NVRTC 11.8.")),
    ]  # fmt: skip
    return _option_group("target", TargetOptions, options)(func)


def rpc_options(tracker_only: bool = False):
    """--rpc-tracker/--rpc-key, and unless ``tracker_only`` --rpc-host/--rpc-port/--rpc-timeout →
    ``rpc``: an RpcOptions (all None: run on this machine)."""
    options = [
        ("tracker", click.option("--rpc-tracker", "tracker", metavar="HOST[:PORT]", help="TVM RPC tracker (port 9190 by default).")),
        ("key", click.option("--rpc-key", "key", metavar="KEY", help="Device key at the tracker (e.g. rasp4b).")),
    ]
    if not tracker_only:
        options += [
            ("host", click.option("--rpc-host", "host", metavar="HOST", help="An RPC server's address, without a tracker.")),
            ("port", click.option("--rpc-port", "port", type=click.IntRange(1, 65535), metavar="PORT", help="The RPC server's port.")),
            ("timeout", click.option("--rpc-timeout", "timeout", type=click.FloatRange(1, 86400), default=600, show_default=True,
                                     help="Seconds one remote step (upload, load, a timing run) may take.")),
        ]  # fmt: skip
    return _option_group("rpc", RpcOptions, options)


def timing_options(repeat: int, number: int, warmup: int):
    """--repeat, --number, --warmup (with these defaults) → ``timing``: a TimingOptions."""
    options = [
        ("repeat", click.option("--repeat", type=click.IntRange(1, 100000), default=repeat, show_default=True, help="Timed samples.")),
        ("number", click.option("--number", type=click.IntRange(1, 100000), default=number, show_default=True, help="Runs per sample.")),
        ("warmup", click.option("--warmup", type=click.IntRange(0, 100000), default=warmup, show_default=True, help="Untimed runs first.")),
    ]  # fmt: skip
    return _option_group("timing", TimingOptions, options)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tvmc-mobilenet")
@click.option("-v", "--verbose", count=True, help="Show the library's and TVM's log messages.")
def cli(verbose: int) -> None:
    """Compile MobileNet v1 (width α, resolution ρ) with Apache TVM for edge devices."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    # MetaSchedule prints its task tables to stdout unless its logger has a level.
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.INFO if verbose else logging.WARNING)


@cli.command()
@network_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def info(network, as_json: bool) -> None:
    """Per-layer Mult-Adds and parameters, totals, and shares by layer type."""
    from tvmc_mobilenet.model.cost import model_cost

    cost = model_cost(network)
    if as_json:
        click.echo(json.dumps(cost.to_json(), indent=2))
        return
    from rich.table import Table

    console = _console()
    layers = Table(title=f"{cost.config.name}  (α={network.alpha:g}, ρ={cost.config.rho:.3f})")
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
    from tvmc_mobilenet.targets.registry import TARGETS, compilers_label

    if as_json:
        click.echo(json.dumps([t.to_json() for t in TARGETS], indent=2))
        return
    from rich.table import Table

    table = Table(title="Targets (any TVM tag or JSON target dict works too; --json shows the TVM targets)")
    for col in ("name", "description", "compilers", "RPC key"):
        table.add_column(col, no_wrap=col != "description")
    for t in TARGETS:
        table.add_row(", ".join((t.name, *t.aliases)), t.description, compilers_label(t), t.rpc_key or "-")
    _console().print(table)


@cli.command()
@model_options(weights=True)
@target_options
@click.option("--tuning-db", type=DIRECTORY, help="MetaSchedule database to apply (default: the target's own, if tuned).")
@click.option("--no-tuning-db", is_flag=True, help="Ignore tuning databases: build with default schedules only.")
@click.option("--no-verify", is_flag=True, help="Do not compare the module with the framework's output.")
@click.option("-o", "--output", type=FILE, help="Artifact file (default: NAME-TARGET.tar here).")
def build(model, target, tuning_db, no_tuning_db, no_verify, output):
    """Compile a MobileNet (or an ONNX or TFLite file) into a verified artifact."""
    from tvmc_mobilenet.build import BuildConfig, build_model

    config = BuildConfig(model=model, target=target, tuning_db=tuning_db, no_tuning_db=no_tuning_db, output=output, verify=not no_verify)
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
@model_options(weights=False)
@target_options
@click.option(
    "--trials",
    type=int,
    default=1000,
    show_default=True,
    help="Total trials for this model's tasks, counting those already in the database.",
)
@click.option("--work-dir", type=DIRECTORY, help="Tuning database directory (default: one per target under the user's cache directory).")
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
@rpc_options(tracker_only=True)
@click.option(
    "--space",
    type=click.Choice(["ours", "generic"]),
    default="ours",
    show_default=True,
    help="Design space for pointwise and depthwise kernels: ours, or MetaSchedule's generic one.",
)
@click.option("--allow-emulated", is_flag=True, help=ALLOW_EMULATED_HELP)
def tune(model, target, trials, work_dir, task_kinds, resume, timeout, seed, rpc, space, allow_emulated):  # fmt: skip
    """Auto-schedule a model's kernels with MetaSchedule into the target's tuning database."""
    from tvmc_mobilenet.tuning.tune import TuneConfig, tune_model

    config = TuneConfig(model=model, target=target, rpc=rpc, trials=trials, work_dir=work_dir, tasks=task_kinds, resume=resume,
                        timeout=timeout, search_seed=seed, space=space, allow_emulated=allow_emulated)  # fmt: skip
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


@cli.command()
@click.argument("artifact", type=FILE)
@click.option("--input", "input_file", type=FILE, help="Input tensor (.npy); default: the artifact's reference input.")
@click.option("--image", "images", type=FILE, multiple=True, help="An image to classify (JPEG, PNG…); repeat for several.")
@click.option("--preprocess", type=click.Choice(list(NORMALISATIONS)),
              help="How the images are normalised (default: what the build recorded).")  # fmt: skip
@click.option("--labels", type=FILE, help="Class names, one a line (default: ImageNet's for 1000 or 1001 classes).")
@click.option("--output", "output_file", type=FILE, help="Save the logits here (.npy).")
@click.option("--top", type=click.IntRange(1, 100), default=5, show_default=True, help="How many classes to print.")
@rpc_options()
def run(artifact: Path, input_file: Path | None, images: tuple[Path, ...], preprocess: str | None, labels: Path | None,
        output_file: Path | None, top: int, rpc: RpcOptions) -> None:  # fmt: skip
    """Run an artifact once (on a tensor or on images) and print the top classes."""
    from tvmc_mobilenet.runtime.commands import RunConfig, run_artifact

    config = RunConfig(artifact, input_file=input_file, images=images, preprocess=preprocess, labels=labels, output_file=output_file,
                       top=top, rpc=rpc)  # fmt: skip
    result = run_artifact(config)
    console = _console()
    if result.normalisation:
        console.print(f"images normalised with '{result.normalisation}', resized and centre-cropped to the model's input")
    for source, classes in zip(result.sources, result.classes, strict=True):
        console.print(f"{source}: top-{top} classes (class: probability)")
        for c in classes:
            console.print(f"  {c.index:>5} {c.name + ': ' if c.name else ''}{c.probability:.3f}", markup=False, highlight=False)
    if result.comparison is not None:
        console.print(f"[green]matches[/green] the reference output (max abs error {result.comparison.max_abs_error:.3g})")
    if result.output_file:
        console.print(f"logits saved to {result.output_file}")


@cli.command()
@click.argument("artifact", type=FILE)
@timing_options(repeat=20, number=10, warmup=5)
@click.option("--json", "json_file", type=FILE, help="Write the results as JSON here.")
@click.option("--profile", is_flag=True, help="Also time each kernel alone: a per-layer table of where the time goes.")
@rpc_options()
def bench(artifact: Path, timing: TimingOptions, json_file: Path | None, profile: bool, rpc: RpcOptions) -> None:
    """Time an artifact, here or on a remote device: median, mean, p90, std (warm-up excluded).

    The device's output for the stored reference input is checked first; a mismatch fails.
    """
    from tvmc_mobilenet.runtime.commands import BenchConfig, bench_artifact

    result = bench_artifact(BenchConfig(artifact, timing=timing, rpc=rpc, profile=profile, json_file=json_file))
    if result.profile is not None:
        _print_profile(result.profile)
    stats = result.stats
    console = _console()
    console.print(
        f"{result.model_name} on {result.target_name} ({result.where}): "
        f"median {stats.median_ms:.3f} ms, mean {stats.mean_ms:.3f} ms, p90 {stats.p90_ms:.3f} ms, "
        f"std {stats.std_ms:.3f} ms over {stats.repeat}×{stats.number} runs; "
        f"{result.images_per_second:.1f} images/s"
    )
    if json_file:
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
@target_options
@click.option("--alphas", default="1,0.75,0.5,0.25", show_default=True, help="Width multipliers, comma-separated.")
@click.option("--resolutions", default="224,192,160,128", show_default=True, help="Resolutions, comma-separated.")
@click.option("--trials-per-model", type=int, default=0, show_default=True, help="Tuning trials per model (0: untuned).")
@click.option(
    "--out",
    type=DIRECTORY,
    default=Path("sweep"),
    show_default=True,
    help="Directory for sweep.json/.csv, plots, report.md, artifacts and the shared tuning database.",
)
@timing_options(repeat=10, number=5, warmup=3)
@click.option(
    "--rounds",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Timing rounds over the whole grid; each model keeps its fastest round (other load on the machine only adds time).",
)
@click.option("--quantize", type=click.Choice(list(QUANTIZE_SCHEMES)), help="Quantize every model (default: none, fp32).")
@click.option("--allow-emulated", is_flag=True, help=ALLOW_EMULATED_HELP)
@rpc_options()
def sweep(target, alphas, resolutions, trials_per_model, out, timing, rounds, quantize, allow_emulated, rpc):  # fmt: skip
    """Build (and tune) every α × resolution model, measure them on the target, report the trade-off.

    Builds are recorded after every model; run the same command again to resume (built models are
    kept, all are measured again).
    """
    from tvmc_mobilenet.sweep.results import SweepConfig, parse_list
    from tvmc_mobilenet.sweep.run import run_sweep

    config = SweepConfig(
        target=target,
        alphas=parse_list(alphas, float, "--alphas"),
        resolutions=parse_list(resolutions, int, "--resolutions"),
        trials_per_model=trials_per_model,
        out=out,
        rpc=rpc,
        timing=timing,
        rounds=rounds,
        quantize=quantize,
        allow_emulated=allow_emulated,
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

    table = Table(title=f"MobileNet v1 on {result.config.target.name} (top-1: published; * TF-slim release)")
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
def device_tracker(host: str, port: int) -> int:
    """Run TVM's RPC tracker in the foreground; Ctrl-C, SIGTERM or SIGHUP stops it.

    Exit status: 0 after SIGTERM or SIGHUP (a stop asked for, as a service manager expects), 130
    after Ctrl-C, non-zero with one line when the tracker ends on its own.
    """
    from tvmc_mobilenet.devices.serve import serve_tracker

    _warn_if_exposed(host, "tracker")
    err = _console(stderr=True)
    outcome = serve_tracker(host, port, log=lambda m: err.print(m, markup=False))
    err.print(outcome.describe(), markup=False)
    return outcome.exit_code


@device.command("emulate")
@click.option("--key", default="rasp4b", show_default=True, help="Key to register under at the tracker.")
@click.option("--tracker", metavar="HOST[:PORT]", default="127.0.0.1:9190", show_default=True, help="The RPC tracker.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server listens on.")
@click.option("--port", type=click.IntRange(1, 65534), default=9090, show_default=True)
@click.option("--cpu", default="cortex-a72", show_default=True,
              help="The CPU qemu emulates (QEMU_CPU): cortex-a72 for a Raspberry Pi 4B, cortex-a76 for a Pi 5.")  # fmt: skip
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), help="The emulated device's directory.")
def device_emulate(key: str, tracker: str, host: str, port: int, cpu: str, root: Path | None) -> int:
    """Run a stock TVM RPC server on the emulated aarch64 device (qemu), registered with a tracker;
    Ctrl-C, SIGTERM or SIGHUP stops it (exit status as for 'device tracker')."""
    from tvmc_mobilenet.devices.serve import serve_emulated_device
    from tvmc_mobilenet.runtime.rpc import DEFAULT_TRACKER_PORT, parse_address

    _warn_if_exposed(host, "server")
    tracker_address = parse_address(tracker, DEFAULT_TRACKER_PORT, "--tracker")
    err = _console(stderr=True)
    outcome = serve_emulated_device(
        key, tracker_address, host=host, port=port, cpu=cpu, root=root, log=lambda m: err.print(m, markup=False)
    )
    err.print(outcome.describe(), markup=False)
    return outcome.exit_code


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
