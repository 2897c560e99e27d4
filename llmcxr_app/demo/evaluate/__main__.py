"""`python -m llmcxr_app.demo.evaluate`: scores the demo model (demo/evaluate/evaluation.py)."""

import sys

from llmcxr_app.demo.evaluate.evaluation import main

sys.argv[0] = (
    "python -m llmcxr_app.demo.evaluate"  # argparse names the program by argv[0]; show the command a user types
)
raise SystemExit(main())
