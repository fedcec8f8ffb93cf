"""What `train.py --help` and `evaluate.py --help` say, kept free of imports so that help answers at once.

Both entry points print their overview from here without importing torch or Lightning (seconds on a
laptop); the option lists of a subcommand (`train.py fit --help`) still come from the parsers.
"""

from __future__ import annotations

TRAIN_DESCRIPTION = """\
SimCLR pretraining (Chen et al. 2020) on PyTorch Lightning: one command for one or many GPUs,
W&B logging (offline without an account), and an online linear-probe accuracy while it trains.
Every run writes into its own folder, runs/<time>/: config.yaml, checkpoints/, curves.png, wandb/.

The three commands you need:
  python train.py fit --config configs/imagefolder.yaml --config configs/cpu-smoke.yaml --data.root DIR
        check the install on a CPU in about two minutes (DIR holds train/<class>/ and val/<class>/)
  python train.py fit --config configs/cifar10.yaml
        pretrain (resume: --config runs/RUN/config.yaml --ckpt_path last)
  python evaluate.py linear --ckpt runs/RUN/checkpoints/last.ckpt
        linear evaluation of the encoder (also knn, finetune, predict, export)"""

# One line per LightningCLI subcommand; tests/test_cli.py checks that they match Lightning's list.
TRAIN_SUBCOMMANDS = {
    "fit": "pretrain, or resume a run with --ckpt_path last",
    "validate": "the validation metrics of a checkpoint (--ckpt_path)",
    "test": "the test metrics of a checkpoint (--ckpt_path)",
}
# train.py has no predict: pretraining trains no classifier, and evaluate.py holds what prediction needs.
NO_PREDICT = (
    "train.py has no predict command: SimCLR pretraining trains no classifier. Train one with `python "
    "evaluate.py linear --ckpt runs/RUN/checkpoints/last.ckpt` (or finetune), then classify images with "
    "`python evaluate.py predict --ckpt <its classifier.pt> IMAGES`; `python evaluate.py export` gives the "
    "encoder's weights for features."
)

EVALUATE_DESCRIPTION = """\
Evaluate a SimCLR checkpoint written by train.py. The data commands (linear, knn, finetune) take
train.py's datamodule flags and config files (--config runs/RUN/config.yaml, --data.root DIR ...);
without them the config.yaml of the run the checkpoint lies in is used. Each command writes into a
new folder, <run>/eval/<command>-<time>/ (or --output_dir), and never overwrites results."""

EVALUATE_COMMANDS = {
    "linear": "linear classifier on frozen features: top-1, top-5, confusion matrix, t-SNE, classifier.pt",
    "knn": "weighted kNN on frozen features (Wu et al. 2018): top-1",
    "finetune": "fine-tune the whole network on 1%, 10% and 100% of the labels",
    "predict": "classify image files or folders with a classifier.pt from linear or finetune",
    "export": "the encoder as a plain torchvision state_dict (encoder.pt) with encoder.json",
}


def asks_for_overview(argv: list[str]) -> bool:
    """Only a bare `--help`: a subcommand's help lists its options, which needs the real parser."""
    return argv in (["-h"], ["--help"])


def overview(prog: str, description: str, commands: dict[str, str], more: str) -> str:
    width = max(len(name) for name in commands)
    listing = "\n".join(f"  {name:<{width}}  {text}" for name, text in commands.items())
    return (
        f"usage: {prog} [-h] {{{','.join(commands)}}} ...\n\n{description}\n\n"
        f"commands:\n{listing}\n\n{more}"
    )


def train_overview() -> str:
    more = (
        "`python train.py fit --config FILE --help` lists every option (model, trainer, callbacks, and "
        "last the --data.* options of the datamodule FILE chooses); see README.md."
    )
    return overview("train.py", TRAIN_DESCRIPTION, TRAIN_SUBCOMMANDS, more)


def evaluate_overview() -> str:
    more = "`python evaluate.py COMMAND --help` lists the options of a command; see README.md, Evaluation."
    return overview("evaluate.py", EVALUATE_DESCRIPTION, EVALUATE_COMMANDS, more)
