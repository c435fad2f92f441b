"""moon: reliable sparse training."""
__version__ = "0.1.0"
