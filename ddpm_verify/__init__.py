"""Tools built on `reference`: the check runner and the command line."""

__version__ = "0.1.0"
