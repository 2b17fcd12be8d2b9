"""jitrl-bench: run, compare and reproduce Just-In-Time Reinforcement Learning for LLM agents."""

__version__ = "0.1.0"
