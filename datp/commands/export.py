"""``datp export CHECKPOINT --format onnx|torchscript``: the whole segment network with its pooling,
dynamic batch, checked against PyTorch; a JSON sidecar documents the input layout."""

from __future__ import annotations

import argparse

from datp.commands.options import non_negative_float, segment_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by datp train")
    parser.add_argument(
        "--format", default="onnx", choices=("onnx", "torchscript"),
        help="onnx (checked with onnxruntime: pip install 'datp[export]') or torchscript (traced)",
    )
    parser.add_argument(
        "--out", help="output file (default: beside the checkpoint, .onnx or .torchscript.pt)"
    )
    parser.add_argument("--segments", type=segment_count,
                        help="N, fixed in the export (default: test N)")
    parser.add_argument(
        "--tolerance", type=non_negative_float, default=1e-4,
        help="the check passes when |export - torch| <= tol * (1 + |torch|) (default 1e-4)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override the checkpoint's saved config",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from datp.engine.build import load_stream
    from datp.engine.export import CannotExport, ExportError, export_stream

    stream = load_stream(args.checkpoint, segments=args.segments, overrides=args.overrides)
    try:
        report = export_stream(stream, args.out, format=args.format, tolerance=args.tolerance,
                               opset=args.opset)
    except CannotExport as error:  # a limit of torch's exporter: the other format may work
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ExportError as error:  # a result, not a mistake: the file does not match PyTorch
        print(f"error: the export does not match PyTorch: {error}", file=sys.stderr)
        return 1
    print(f"wrote {report.path} ({report.format}) and {report.sidecar}")
    print(
        f"checked against PyTorch on {report.check_batch} random videos: max |difference| "
        f"{report.max_abs_diff:.2e}, tolerance {report.tolerance:g} x (1 + |value|)"
    )
    return 0
