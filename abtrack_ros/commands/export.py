"""`abtrack export`: build the deployable artefacts of a checkpoint ahead of time (docs/speed.md)."""
from __future__ import annotations

import argparse
import sys

HELP = "Build deployable artefacts (per-block ONNX graphs, TensorRT engines, fp16 checkpoint) into a folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from abtrack_ros.backends import ARTEFACT_FORMATS

    parser.add_argument("--format", required=True, choices=list(ARTEFACT_FORMATS),
                        help="onnx: per-block graphs for onnxruntime; tensorrt: FP16 engines for THIS machine's "
                             "GPU and TensorRT (run it on the target); torch-fp16: a half-size checkpoint")
    parser.add_argument("--out", required=True, help="folder to create (load it with --checkpoint DIR)")
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (.pt); default: the package's default model")
    parser.add_argument("--device", default="cuda", help="CUDA device TensorRT builds for (default cuda)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")


def run(args: argparse.Namespace) -> int:
    from abtrack_ros.backends import export_artefacts, resolve_checkpoint
    from abtrack_ros.model import CheckpointError
    from abtrack_ros.tracking.tracker import RANDOM_WEIGHTS_WARNING, load_model_or_untrained

    try:
        model, cfg, weights = load_model_or_untrained(resolve_checkpoint(args.checkpoint)[0])
        if weights.startswith(RANDOM_WEIGHTS_WARNING):
            raise ValueError("no checkpoint to export (no --checkpoint and no default model installed)")
        manifest = export_artefacts(model.eval(), cfg, args.out, args.format, weights, device=args.device,
                                    overwrite=args.overwrite)
    except (CheckpointError, ValueError, RuntimeError, OSError) as exc:
        print(f"abtrack export: error: {exc}", file=sys.stderr)
        return 2
    size = sum(f["bytes"] for f in manifest["files"])
    print(f"exported {manifest['model']['name']} ({weights}) as {args.format}, {manifest['precision']}: "
          f"{len(manifest['files'])} files, {size / 2 ** 20:.1f} MiB in {args.out}")
    print(f"load it with: --checkpoint {args.out}  (node: -p checkpoint:={args.out})")
    return 0
