"""``python -m course_utils.bench``: every benchmark section, one after the other."""

import importlib
import sys

import torch

from ..core import get_device

SECTIONS = ["mha", "transformer", "synthesizers", "generation"]  # modules of this package, each with run(device)


def main() -> int:
    device = get_device()
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads")
    wanted = sys.argv[1:] or SECTIONS
    for name in wanted:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            print(f"\n[{name}] not written yet")
            continue
        module.run(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
