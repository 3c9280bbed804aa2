"""nas: a graph-based neural architecture search and scaling engine for PyTorch."""

__version__ = "0.1.0"
