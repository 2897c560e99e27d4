"""`python -m llmcxr_app.demo.evaluate`: scores the demo model (demo/evaluate/evaluation.py); with
--handwritten, on the hand-written evaluation text set instead (demo/evaluate/handwritten.py)."""

import sys

# argparse names the program by argv[0]; show the command a user types
sys.argv[0] = "python -m llmcxr_app.demo.evaluate"
if "--handwritten" in sys.argv[1:]:
    from llmcxr_app.demo.evaluate.handwritten import main
else:
    from llmcxr_app.demo.evaluate.evaluation import main

raise SystemExit(main())
