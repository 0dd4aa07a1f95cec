"""Copy a checkpoint with its floating-point weights stored as fp16 (how models are shipped),
optionally with tracker settings fitted for it (the confidence weights printed by
benchmarks/fit_confidence.py, the LOST thresholds) written into its `tracker` section.

    python scripts/fp16_copy.py SOURCE.pt DESTINATION.pt [--tracker SETTINGS.yaml]

SETTINGS.yaml holds a `tracker:` section; its keys replace the checkpoint's and are checked as
strictly as a config file (a `confidence` mapping is read as in a config file: the weights it
leaves out take their defaults, so give them all, as fit_confidence.py prints them).
"""
import argparse
import dataclasses

import yaml

from abtrack_ros.config import ConfigError, TrackerConfig, from_dict, to_dict
from abtrack_ros.model import load_checkpoint, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.add_argument("--tracker", help="YAML file with a `tracker:` section to store in the copy")
    args = parser.parse_args()
    model, cfg, extra = load_checkpoint(args.source)
    if args.tracker:
        with open(args.tracker) as handle:
            settings = yaml.safe_load(handle) or {}
        if not isinstance(settings, dict) or set(settings) != {"tracker"} or not isinstance(settings["tracker"], dict):
            raise SystemExit(f"{args.tracker}: expected exactly one `tracker:` mapping")
        try:
            tracker = from_dict(TrackerConfig, {**to_dict(cfg.tracker), **settings["tracker"]}, "tracker")
        except ConfigError as exc:
            raise SystemExit(f"{args.tracker}: {exc}") from None
        if tracker.confidence.quality_logit != 0 and model.quality is None:
            raise SystemExit(f"{args.tracker}: confidence.quality_logit is not 0 but the model has no quality head")
        cfg = dataclasses.replace(cfg, tracker=tracker)
    save_checkpoint(args.destination, model, cfg, extra, half=True)


if __name__ == "__main__":
    main()
