"""Pretrain SimCLR: `python train.py fit --config configs/cifar10.yaml` (see README.md)."""

from cli import cli_main

if __name__ == "__main__":
    cli_main()
