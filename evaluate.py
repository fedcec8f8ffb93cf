"""Evaluate a SimCLR checkpoint: `python evaluate.py {linear,knn,finetune,predict,export} --ckpt PATH`.

See README.md (Evaluation) and evaluation/cli.py.
"""

from evaluation.cli import main
from reliability.errors import reported_as_one_line

if __name__ == "__main__":
    with reported_as_one_line():
        main()
