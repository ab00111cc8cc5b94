"""Tools built on `reference`: the check runner and the command line."""

__version__ = "0.1.0"

#: the default seed of every seeded draw of the checks (batteries, Monte Carlo, the oracle loops)
SEED = 20261122
