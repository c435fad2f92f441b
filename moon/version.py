"""The package's version (a ground-floor module: the run records it without importing the
package's top, :mod:`moon`, which would import the runner)."""

__version__ = "0.1.0"
