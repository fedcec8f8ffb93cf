"""Pretrain SimCLR: `python train.py fit --config configs/cifar10.yaml` (see README.md, `--help`)."""

import sys

from help_text import asks_for_overview, train_overview

if __name__ == "__main__":
    if asks_for_overview(sys.argv[1:]):
        print(train_overview())  # without importing torch and Lightning, which take seconds
    else:
        from cli import cli_main

        cli_main()
