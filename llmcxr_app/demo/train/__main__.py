"""`python -m llmcxr_app.demo.train`: trains the embedded demo model (demo/train/training.py; flags in demo/train/cli.py)."""

import sys

from llmcxr_app.demo.train.cli import main

sys.argv[0] = (
    "python -m llmcxr_app.demo.train"  # argparse names the program by argv[0]; show the command a user types
)
main()
