"""`python -m llmcxr_app.convert`: the command-line name of the weight converter (loading/convert.py).

Only an entry point; the converter lives with the loading code it shares (loading/convert.py).
"""
