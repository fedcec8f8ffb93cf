"""Evaluate a SimCLR checkpoint: `python evaluate.py {linear,knn,finetune,predict,export} --ckpt PATH`.

See README.md (Evaluation), `--help` and evaluation/cli.py.
"""

import sys

from help_text import asks_for_overview, evaluate_overview

if __name__ == "__main__":
    if asks_for_overview(sys.argv[1:]):
        print(evaluate_overview())  # without importing torch, which takes seconds
    else:
        from evaluation.cli import main
        from reliability.errors import reported_as_one_line

        with reported_as_one_line():
            main()
