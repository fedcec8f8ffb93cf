"""Convert an image folder into streamable shards: `python shards.py convert ROOT OUT` (README)."""

import sys

from help_text import asks_for_overview, shards_overview

if __name__ == "__main__":
    if asks_for_overview(sys.argv[1:]):
        print(shards_overview())  # without importing torch, which takes seconds
    else:
        from conversion.cli import main
        from reliability.errors import reported_as_one_line

        with reported_as_one_line():
            main()
