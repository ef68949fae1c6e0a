"""Build the cached artifacts (corpus tokenizer, β, R, trajectories, scores) without training.

python -m rdx.prepare attribute=sport     # same overrides as rdx.train
"""

import sys

from rdx.train import main

if __name__ == "__main__":
    sys.argv.insert(1, "stage=prepare")
    main()
