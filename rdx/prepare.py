"""Build the cached artifacts (corpus tokenizer, β, R, trajectories, scores) without training.

python -m rdx.prepare attribute=sport                   # same overrides as rdx.train
python -m rdx.prepare -m attribute=negative,positive    # a sweep: one job per attribute
"""

import sys

from rdx.train import cli

if __name__ == "__main__":
    sys.argv.insert(1, "stage=prepare")
    cli()
