"""`python -m llmcxr_app.convert llm|vqgan ...`: runs loading/convert.py's command line."""

from llmcxr_app.loading.convert import main

raise SystemExit(main())
