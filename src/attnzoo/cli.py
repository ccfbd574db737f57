"""``attnzoo`` command line: list, info, mask, plot, catalogue, bench.

User errors (bad flags, unknown names, options a mask does not take) exit with code 2 and one
line naming the flag. ``list`` with no match and ``bench speed`` with a failed cell exit with
code 1 and say so on stderr.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from attnzoo._argtypes import finite_float as _finite_float
from attnzoo._argtypes import name_list as _name_list
from attnzoo._argtypes import nonneg_int_list as _nonneg_int_list
from attnzoo._argtypes import positive_float as _positive_float
from attnzoo._argtypes import positive_int as _positive_int
from attnzoo._argtypes import positive_int_list as _int_list

__all__ = ["main"]


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _build_parser() -> _Parser:
    parser = _Parser(prog="attnzoo", description="The attention zoo: list, inspect, benchmark.")
    from attnzoo import __version__

    parser.add_argument("--version", action="version", version=f"attnzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="registered names")
    p.add_argument("pattern", nargs="?", default="*", help="glob on the name, e.g. 'vit_*'")
    p.add_argument("--family", help="positional, sequence, efficient, vision or models")
    p.add_argument("--tags", type=_name_list, default=[], help="comma-separated tags to require")

    p = sub.add_parser("info", help="paper, tags, complexity and signature of one entry")
    p.add_argument("name")

    p = sub.add_parser(
        "mask",
        help="draw a mask function",
        description="Draw a mask function; its options become flags (--block-size ...).",
    )
    p.add_argument("name", help="a mask function of attnzoo.masks")
    p.add_argument("--length", type=_positive_int, required=True, help="query length L")
    p.add_argument("--kv-length", type=_positive_int, help="key length S (default L)")
    p.add_argument("--ascii", action="store_true", help="draw with '#' and '.'")

    from attnzoo.viz import gallery  # the kinds and their flags live in attnzoo/viz/gallery.py

    p = sub.add_parser(
        "plot",
        help="draw a picture: attention maps, rollout, masks, positional encodings ...",
        description="Draw one picture of the gallery as a PNG. Kinds:\n" + gallery.describe(),
        epilog="Options of one kind: attnzoo plot KIND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", metavar="KIND", type=gallery.check_kind, help="the picture")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the kind's options, --out FILE.png")

    p = sub.add_parser(
        "arena",
        help="the main job: LRA-style benchmark of every mechanism (score, speed, memory)",
        description="Train and measure the sequence and efficient mechanisms on the arena "
        "tasks (ListOps, Text, Retrieval, Image, Pathfinder); writes results.jsonl, report.md "
        "and bubble.png into --out.",
    )
    p.add_argument("--preset", default="quick", help="smoke, quick (default), standard, paper")
    p.add_argument("--out", default="arena-results", help="results folder")
    p.add_argument("--tasks", type=_name_list, help="e.g. listops,text (default: all)")
    p.add_argument("--mechanisms", type=_name_list, help="e.g. mha,local (default: all)")
    p.add_argument("--seeds", type=_nonneg_int_list, help="e.g. 0,1,2 (default: the preset's)")
    p.add_argument("--steps", type=_positive_int, help="override the training steps of every run")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's)")
    p.add_argument("--resume", action="store_true", help="skip finished runs, continue the last")
    p.add_argument("--no-efficiency", action="store_true", help="skip the speed/memory sweep")
    p.add_argument("--data-dir", help="folder with the original LRA files, one subfolder per task")
    p.add_argument("--cache-dir", help="where generated data is cached (default ~/.cache/attnzoo)")

    p = sub.add_parser("catalogue", help="markdown catalogue of the registry")
    p.add_argument(
        "--output", help="write the catalogue to this file (and the Chinese one as NAME.zh.md)"
    )
    p.add_argument("--readme", help="refresh the table between the README's catalogue markers")
    p.add_argument("--pages", help="also write the site's page of every name into this folder")
    p.add_argument("--bench", help="speed JSON the pages show (attnzoo bench speed --output)")
    p.add_argument(
        "--check", action="store_true", help="exit 1 if --output/--readme/--pages are stale"
    )

    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    s = bench.add_parser("speed", help="time and peak memory of token mixers vs mha")
    s.add_argument("--names", type=_name_list, required=True, help="e.g. mha,torch_mha,local")
    s.add_argument("--lengths", type=_int_list, required=True, help="e.g. 1024,4096")
    s.add_argument("--batch", type=_positive_int, default=1)
    s.add_argument("--dim", type=_positive_int, default=512)
    s.add_argument("--heads", type=_positive_int, default=8)
    s.add_argument(
        "--dtype", choices=("float32", "float16", "bfloat16", "float64"), default="float32"
    )
    s.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    s.add_argument("--threads", type=_positive_int, default=2)
    s.add_argument("--repeats", type=_positive_int, default=3)
    s.add_argument("--warmup", type=_positive_int, default=1)
    s.add_argument("--backward", action="store_true", help="time forward + backward")
    s.add_argument("--causal", action="store_true", help="call with is_causal=True")
    s.add_argument("--timeout", type=_positive_float, default=600.0, help="seconds per cell (> 0)")
    s.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="constructor option for one mechanism, e.g. local:window=256 (repeatable)",
    )
    s.add_argument(
        "--peers",
        action="store_true",
        help="add each mechanism's peer package (sdpa_fused for mha, peer_local for local, ...) "
        "and print the side-by-side speed-ups",
    )
    s.add_argument("--output", help="also write results as JSON (atomically)")

    v = bench.add_parser("vision", help="params, FLOPs, latency (and accuracy) of vision modules")
    v.add_argument("--names", type=_name_list, help="default: every vision module")
    v.add_argument("--channels", type=_positive_int, default=256)
    v.add_argument("--size", type=_positive_int, default=56, help="map height and width")
    v.add_argument("--batch", type=_positive_int, default=1)
    v.add_argument("--threads", type=_positive_int, default=2)
    v.add_argument("--repeats", type=_positive_int, default=5)
    v.add_argument("--train", action="store_true", help="also train a tiny ResNet on digits")
    v.add_argument("--seeds", type=_nonneg_int_list, default=[0, 1, 2])
    v.add_argument("--epochs", type=_positive_int, default=8)
    v.add_argument("--output", help="also write results as JSON (atomically)")

    t = bench.add_parser("vit", help="ViT forward: attnzoo against timm (same weights, one run)")
    t.add_argument("--model", default="vit_base_patch16_224", help="a vit_* model name")
    t.add_argument("--batch", type=_positive_int, default=8)
    t.add_argument("--img-size", type=_positive_int, default=224)
    t.add_argument("--threads", type=_positive_int, default=2)
    t.add_argument("--repeats", type=_positive_int, default=5)
    t.add_argument("--output", help="also write results as JSON (atomically)")

    b = bench.add_parser("sparse", help="block-sparse engine time against mask density vs SDPA")
    b.add_argument("--length", type=_positive_int, default=16384)
    b.add_argument("--heads", type=_positive_int, default=8)
    b.add_argument("--head-dim", type=_positive_int, default=64)
    b.add_argument("--batch", type=_positive_int, default=1)
    b.add_argument("--block-size", type=_positive_int, default=None, help="default: engine's")
    b.add_argument(
        "--densities",
        type=_density_list,
        default=None,
        help="fractions of block pairs computed, default 0.01,0.02,0.05,0.1,0.2,0.5,1",
    )
    b.add_argument("--threads", type=_positive_int, default=2)
    b.add_argument("--repeats", type=_positive_int, default=3)
    b.add_argument("--backward", action="store_true", help="time forward + backward")
    b.add_argument("--output", help="also write results as JSON (atomically)")
    b.add_argument("--plot", help="also draw time against density into this PNG")

    d = bench.add_parser("decode", help="greedy decoding tokens/s with and without the KV cache")
    d.add_argument("--tokens", type=_positive_int, default=256, help="tokens generated")
    d.add_argument("--batch", type=_positive_int, default=1)
    d.add_argument("--dim", type=_positive_int, default=512)
    d.add_argument("--heads", type=_positive_int, default=8)
    d.add_argument("--layers", type=_positive_int, default=6)
    d.add_argument("--attention", default="mha", help="mha, linear or performer have a cache")
    d.add_argument("--threads", type=_positive_int, default=2)
    d.add_argument("--repeats", type=_positive_int, default=3)
    d.add_argument("--output", help="also write results as JSON (atomically)")
    return parser


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _cmd_list(args) -> int:
    import attnzoo

    try:
        names = attnzoo.list_names(args.pattern, family=args.family, tags=args.tags)
    except ValueError as error:
        raise UsageError(f"argument --family: {error}") from None
    if not names:
        where = "".join(
            f", {label} {value}"
            for label, value in (("family", args.family), ("tags", ",".join(args.tags)))
            if value
        )
        print(
            f"attnzoo: no registered name matches {args.pattern!r}{where}; `attnzoo list` "
            "shows every name",
            file=sys.stderr,
        )
        return 1
    width = max((len(n) for n in names), default=0)
    for name in names:
        entry = attnzoo.info(name)
        print(f"{name:<{width}}  {entry.family:<10}  {entry.summary}")
    return 0


def _cmd_info(args) -> int:
    import attnzoo

    try:
        entry = attnzoo.info(args.name)
    except ValueError as error:
        raise UsageError(f"argument name: {error}") from None
    obj = entry.obj
    print(f"{entry.name} ({entry.family}): {entry.summary}")
    print(f"  class:      {obj.__module__}.{obj.__qualname__}")
    if getattr(obj, "backend", None):
        print(f"  backend:    {obj.backend}")
    print(f"  paper:      {entry.paper.title} — {entry.paper.authors}, {entry.paper.year}")
    print(f"  url:        {entry.paper.url}")
    print(f"  tags:       {', '.join(entry.tags)}")
    print(f"  complexity: {entry.complexity}")
    flags = [
        f
        for f in ("supports_mask", "supports_causal", "supports_cross", "fixed_length")
        if hasattr(obj, f)
    ]
    if flags:
        print("  flags:      " + ", ".join(f"{f}={getattr(obj, f)}" for f in flags))
    target = obj.__init__ if inspect.isclass(obj) else obj
    signature = str(inspect.signature(target)).replace("(self, ", "(").replace(" -> 'None'", "")
    print(f"  signature:  {entry.name}{signature}")
    return 0


def _int_or_int_list(text: str) -> int | list[int]:
    """``2`` -> 2, ``2,3`` -> [2, 3]: for options typed ``int | Tensor`` (``prefix_len``)."""
    values = _nonneg_int_list(text)
    return values[0] if len(values) == 1 and "," not in text else values


def _mask_parameter_type(param: inspect.Parameter):
    """The argparse type of a mask option, from its annotation (a string: postponed)."""
    annotation = str(param.annotation)
    if param.default is not inspect.Parameter.empty and isinstance(param.default, bool):
        return "flag"
    if "Sequence" in annotation:
        return _nonneg_int_list
    if "Tensor" in annotation:
        return _int_or_int_list if "int" in annotation else _nonneg_int_list
    if "int" in annotation:
        return int
    if "float" in annotation:
        return _finite_float
    return str


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _cmd_mask(args, extra: list[str]) -> int:
    import torch

    from attnzoo import masks

    if args.name not in masks.MASK_FUNCTIONS:
        known = ", ".join(sorted(masks.MASK_FUNCTIONS))
        raise UsageError(f"argument name: unknown mask {args.name!r}; choose from {known}")
    factory = masks.MASK_FUNCTIONS[args.name]
    sub = _Parser(prog=f"attnzoo mask {args.name}", allow_abbrev=False)
    auto = {"q_len": args.length, "kv_len": args.kv_length or args.length}
    params = inspect.signature(factory).parameters
    flags = {}
    for param in params.values():
        if param.name in auto:
            continue
        flag = flags[param.name] = _flag(param.name)
        kind = _mask_parameter_type(param)
        required = param.default is inspect.Parameter.empty
        if kind == "flag":
            sub.add_argument(
                flag, dest=param.name, action=argparse.BooleanOptionalAction, default=param.default
            )
        else:
            sub.add_argument(
                flag,
                dest=param.name,
                type=kind,
                required=required,
                default=None if required else param.default,
            )
    parsed, unknown = sub.parse_known_args(extra)
    if unknown:
        stray = next((item for item in unknown if item.startswith("-")), None)
        if stray is None:
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
        takes = ", ".join(flags.values()) or "no options"
        raise UsageError(
            f"argument {stray.partition('=')[0]}: the {args.name} mask does not take this "
            f"option; it takes {takes} (besides --length, --kv-length, --ascii)"
        )
    options = vars(parsed)
    for key, value in options.items():
        if isinstance(value, list) and "Tensor" in str(params[key].annotation):
            options[key] = torch.tensor(value)
    options.update({k: v for k, v in auto.items() if k in params})
    try:
        mask_mod = factory(**options)
    except (TypeError, ValueError) as error:
        message = str(error).splitlines()[0]
        blamed = [name for name in flags if message.startswith(f"{name} ")]
        prefix = f"argument {flags[blamed[0]]}: " if blamed else ""
        raise UsageError(prefix + message) from None
    kv_len = args.kv_length or args.length
    grid = masks.materialize(mask_mod, args.length, kv_len)[0, 0]
    style = {"filled": "#", "empty": "."} if args.ascii else {}
    print(masks.to_string(grid, **style))
    density = grid.float().mean().item()
    print(
        f"{args.name}: L={args.length}, S={kv_len}, {int(grid.sum())} of {grid.numel()} "
        f"pairs attend ({density:.1%})"
    )
    return 0


def _cmd_plot(args) -> int:
    from attnzoo.viz import gallery

    try:
        path = gallery.run_cli(args.kind, args.options)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error).splitlines()[0]) from None
    print(f"wrote {path}")
    return 0


def _cmd_arena(args) -> int:
    import torch

    from attnzoo.arena.runner import ArenaConfig, ArenaError, run_arena

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"argument --device: {args.device!r} requested but CUDA is not available")
    config = ArenaConfig(
        preset=args.preset,
        out=args.out,
        tasks=args.tasks,
        mechanisms=args.mechanisms,
        seeds=args.seeds,
        steps=args.steps,
        device=args.device,
        resume=args.resume,
        efficiency=not args.no_efficiency,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        threads=args.threads,
    )
    try:
        result = run_arena(config)
    except ArenaError as error:
        raise UsageError(str(error)) from None
    if result["report"] is not None:
        state = "interrupted: partial report" if result["interrupted"] else "report"
        print(f"arena {state}: {result['report']}")
        if result["interrupted"]:
            print(f"continue with: attnzoo arena --preset {args.preset} --out {args.out} --resume")
    return 130 if result["interrupted"] else 0


def _cmd_catalogue(args) -> int:
    from pathlib import Path

    from attnzoo.catalogue import catalogue_markdown, update_readme, write_if_changed

    text = catalogue_markdown() + "\n"
    stale = []
    if args.output:
        # the Chinese page beside it: catalogue.md -> catalogue.zh.md
        chinese = Path(args.output).with_suffix(".zh" + (Path(args.output).suffix or ".md"))
        for path, body in ((Path(args.output), text), (chinese, catalogue_markdown("zh") + "\n")):
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != body:
                    stale.append(str(path))
            else:
                write_if_changed(path, body)
    if args.readme:
        current = Path(args.readme).read_text(encoding="utf-8")
        try:
            updated = update_readme(current)
        except ValueError as error:
            raise UsageError(f"argument --readme: {error}") from None
        if args.check and updated != current:
            stale.append(args.readme)
        elif not args.check:
            write_if_changed(args.readme, updated)
    if args.pages:
        from attnzoo.sitepages import write_pages

        changed = write_pages(args.pages, args.bench, check=args.check)
        if args.check and changed:
            stale.append(f"{len(changed)} page(s) under {args.pages} (e.g. {changed[0]})")
    if not args.output and not args.readme and not args.pages:
        print(text, end="")
    if stale:
        print(f"stale: {', '.join(stale)}; run `make catalogue`", file=sys.stderr)
        return 1
    return 0


def _cmd_bench_speed(args) -> int:
    import attnzoo
    from attnzoo.arena.efficiency import (
        BASELINES,
        SpeedConfig,
        dense_notes,
        failed_cells,
        format_peer_table,
        format_table,
        run_speed,
        write_json,
    )

    if args.peers:
        from attnzoo.arena.peers import PEERS

        for peer, spec in PEERS.items():
            if spec.mechanism in args.names and peer not in args.names:
                args.names.append(peer)
    for name in args.names:
        if name in BASELINES:
            continue
        try:
            entry = attnzoo.info(name)
        except ValueError as error:
            raise UsageError(f"argument --names: {error}") from None
        if entry.family not in ("sequence", "efficient"):
            raise UsageError(
                f"argument --names: {name!r} is a {entry.family} entry, not a token mixer"
            )
    options: dict[str, dict[str, Any]] = {}
    for item in args.option:
        name, sep, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq or not key or name not in args.names:
            raise UsageError(
                f"argument --option: expected NAME:KEY=VALUE with NAME in --names, got {item!r}"
            )
        options.setdefault(name, {})[key] = _parse_value(value)
    matched: list[str] = []
    if args.peers:  # a peer shares its mechanism's configuration, projections included
        for peer, spec in PEERS.items():
            if peer not in args.names:
                continue
            shared = {k: v for k, v in options.get(spec.mechanism, {}).items() if k != "qkv_bias"}
            if shared:
                options.setdefault(peer, {}).update(shared)
            if spec.mechanism in args.names and "qkv_bias" not in options.get(spec.mechanism, {}):
                options.setdefault(spec.mechanism, {})["qkv_bias"] = spec.qkv_bias
                if not spec.qkv_bias:
                    matched.append(spec.mechanism)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(
                f"argument --device: {args.device!r} requested but CUDA is not available"
            )
    config = SpeedConfig(
        names=args.names,
        lengths=args.lengths,
        batch=args.batch,
        dim=args.dim,
        heads=args.heads,
        dtype=args.dtype,
        device=args.device,
        threads=args.threads,
        backward=args.backward,
        causal=args.causal,
        repeats=args.repeats,
        warmup=args.warmup,
        timeout=args.timeout,
        options=options,
    )
    mode = "forward+backward" if args.backward else "forward"
    print(
        f"# bench speed: B={args.batch}, dim={args.dim}, heads={args.heads}, {args.dtype}, "
        f"{args.device}, {args.threads} threads, {mode}{', causal' if args.causal else ''}; "
        f"median of {args.repeats}",
        flush=True,
    )

    if matched:
        print(
            f"# --peers: {', '.join(matched)} built with qkv_bias=False, as their peers' q, k, v "
            "projections (--option NAME:qkv_bias=True keeps the bias)",
            flush=True,
        )

    def progress(result) -> None:
        state = result.error or f"{result.seconds * 1e3:.1f} ms, {result.peak_mb:.1f} MB"
        print(f"  {result.name} L={result.length}: {state}", file=sys.stderr, flush=True)

    results = run_speed(config, progress=progress)
    reference = "mha" if "mha" in args.names else args.names[0]
    print(format_table(results, reference=reference))
    if args.peers:
        print()
        print(format_peer_table(results))
    for line in dense_notes(results):
        print(line)
    if args.output:
        write_json(args.output, config, results)
    failed = failed_cells(results)
    if failed:  # the table says which; the exit status lets scripts and CI see it
        print(
            f"attnzoo: bench speed: {len(failed)} of {len(results)} cells failed: "
            + "; ".join(failed),
            file=sys.stderr,
        )
        return 1
    return 0


def _density_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        message = f"expected fractions like 0.01,0.1,1, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not all(0 < value <= 1 for value in values):
        raise argparse.ArgumentTypeError(f"densities must be in (0, 1], got {text!r}")
    return values


def _cmd_bench_sparse(args) -> int:
    from attnzoo.arena.io import write_json_atomic
    from attnzoo.arena.sparse_bench import (
        DENSITIES,
        SparseBenchConfig,
        format_sparse_table,
        plot_density,
        run_sparse,
    )

    config = SparseBenchConfig(
        length=args.length,
        heads=args.heads,
        head_dim=args.head_dim,
        batch=args.batch,
        block_size=args.block_size,
        densities=args.densities or list(DENSITIES),
        repeats=args.repeats,
        backward=args.backward,
        threads=args.threads,
    )
    print(
        f"# bench sparse: q, k, v ({args.batch}, {args.heads}, {args.length}, {args.head_dim}) "
        f"float32, cpu, {args.threads} threads, median of {args.repeats}, "
        + ("forward + backward" if args.backward else "forward"),
        flush=True,
    )

    def progress(row) -> None:
        print(f"  density {row['density']:.3f}: {row['engine_ms']:.1f} ms", file=sys.stderr)

    record = run_sparse(config, progress=progress)
    print(format_sparse_table(record))
    if args.output:
        write_json_atomic(args.output, record)
    if args.plot:
        plot_density(record, args.plot)
    return 0


def _cmd_bench_vision(args) -> int:
    import attnzoo
    from attnzoo.arena.io import write_json_atomic
    from attnzoo.arena.vision_bench import (
        VisionBenchConfig,
        as_dict,
        format_vision_table,
        run_vision,
    )

    names = args.names or attnzoo.list_names(family="vision")
    for name in names:
        try:
            family = attnzoo.info(name).family
        except ValueError as error:
            raise UsageError(f"argument --names: {error}") from None
        if family != "vision":
            raise UsageError(f"argument --names: {name!r} is a {family} entry, not a vision module")
    config = VisionBenchConfig(
        names=names,
        channels=args.channels,
        size=args.size,
        batch=args.batch,
        threads=args.threads,
        repeats=args.repeats,
        train=args.train,
        seeds=args.seeds,
        epochs=args.epochs,
    )
    print(
        f"# bench vision: ({args.batch}, {args.channels}, {args.size}, {args.size}) float32, "
        f"cpu, {args.threads} threads, median of {args.repeats}"
        + (f"; digits, {args.epochs} epochs, seeds {args.seeds}" if args.train else ""),
        flush=True,
    )

    def progress(result) -> None:
        print(f"  {result.name}: {result.error or 'done'}", file=sys.stderr, flush=True)

    results = run_vision(config, progress=progress)
    print(format_vision_table(results, config))
    if args.output:
        write_json_atomic(args.output, as_dict(config, results))
    return 0


def _cmd_bench_model(args) -> int:
    from attnzoo.arena import model_bench
    from attnzoo.arena.io import write_json_atomic

    if args.bench == "vit":
        if not args.model.startswith("vit_"):
            raise UsageError(f"argument --model: expected a vit_* model, got {args.model!r}")
        config = model_bench.ViTConfig(
            model=args.model,
            batch=args.batch,
            img_size=args.img_size,
            threads=args.threads,
            repeats=args.repeats,
        )
        try:
            result = model_bench.run_vit(config)
        except (ImportError, ValueError) as error:
            raise UsageError(str(error)) from None
        s = result["seconds"]
        print(
            f"# bench vit: {args.model}, batch {args.batch}, {args.img_size} px, forward, cpu, "
            f"{args.threads} threads, median of {args.repeats} (interleaved)\n"
            f"attnzoo {s['attnzoo'] * 1e3:.1f} ms, timm {s['timm'] * 1e3:.1f} ms: timm / "
            f"attnzoo = {result['timm_over_attnzoo']:.3f}; max |difference| "
            f"{result['max_abs_difference']:.1e}"
        )
    else:
        config = model_bench.DecodeConfig(
            tokens=args.tokens,
            batch=args.batch,
            dim=args.dim,
            heads=args.heads,
            layers=args.layers,
            ffn=4 * args.dim,
            attention=args.attention,
            threads=args.threads,
            repeats=args.repeats,
        )
        try:
            result = model_bench.run_decode(config)
        except (TypeError, ValueError) as error:
            raise UsageError(str(error).splitlines()[0]) from None
        tps = result["tokens_per_second"]
        print(
            f"# bench decode: transformer d={args.dim}, {args.layers}+{args.layers} layers, "
            f"{args.attention}, greedy, {args.tokens} tokens, batch {args.batch}, cpu, "
            f"{args.threads} threads, median of {args.repeats}\n"
            f"cached {tps['cached']:.1f} tokens/s, uncached {tps['uncached']:.1f} tokens/s: "
            f"{result['speedup']:.2f}x; same tokens: {result['same_tokens']}"
        )
    if args.output:
        write_json_atomic(args.output, result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "mask":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "mask":
            return _cmd_mask(args, extra)
        if args.command == "plot":
            return _cmd_plot(args)
        if args.command == "catalogue":
            return _cmd_catalogue(args)
        if args.command == "arena":
            return _cmd_arena(args)
        if args.bench == "vision":
            return _cmd_bench_vision(args)
        if args.bench == "sparse":
            return _cmd_bench_sparse(args)
        if args.bench in ("vit", "decode"):
            return _cmd_bench_model(args)
        return _cmd_bench_speed(args)
    except UsageError as error:
        print(f"attnzoo: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
