"""`python -m llmcxr_app.bench`: the benchmark's command line (bench/benchmark.py)."""

from llmcxr_app.bench.benchmark import main

raise SystemExit(main())
