"""LLM-CXR Studio: chat about chest X-rays with the LLM-CXR model (research demo, not a medical device)."""

__version__ = "0.1.0"
