"""Evaluate a SimCLR checkpoint: `python evaluate.py {linear,knn,finetune,predict,export} --ckpt PATH`.

See README.md (Evaluation) and evaluation/cli.py.
"""

from evaluation.cli import main

if __name__ == "__main__":
    main()
