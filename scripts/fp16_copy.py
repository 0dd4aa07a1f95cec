"""Copy a checkpoint with its floating-point weights stored as fp16 (how models are shipped).

    python scripts/fp16_copy.py SOURCE.pt DESTINATION.pt
"""
import sys

from abtrack_ros.model import load_checkpoint, save_checkpoint

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model, cfg, extra = load_checkpoint(sys.argv[1])
    save_checkpoint(sys.argv[2], model, cfg, extra, half=True)
