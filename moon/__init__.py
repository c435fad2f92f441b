"""moon: reliable sparse training (MOON, CigL, DICE on dense, static, SET and RigL).

``moon.run(cfg)`` trains and evaluates one :class:`moon.config.RunConfig` and writes its
``result.json``; see the README and design.md for the rest.
"""

from moon.version import __version__

__all__ = ["__version__", "run"]


def run(*args, **kwargs):
    """Train, evaluate and write ``result.json``; see :func:`moon.runner.run`."""
    from moon.runner import run as _run

    return _run(*args, **kwargs)
