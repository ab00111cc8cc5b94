"""conftest of the property suite: Hypothesis profiles and shared settings (shipped with the suite,
so an installed copy runs as the checkout does).

Profiles (select with ``--hypothesis-profile NAME``; default ``ci`` when CI=true, else ``dev``):
- ``dev``:  quick local runs, 50 examples per property.
- ``ci``:   Hypothesis's own ``ci`` profile (derandomised, no example database, no deadline),
            extended with 100 examples per property.
- ``deep``: 2000 examples per property, no deadline; takes as long as it needs.
- ``selfcheck``: the self-check's runs against broken variants of the reference.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before any torch import (2-core machines)

from hypothesis import HealthCheck, Phase, settings  # noqa: E402

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("ci", parent=settings.get_profile("ci"), max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
# the self-check's nested runs (properties/support/mutation.py): explicit examples and 8 derandomised
# draws per property, unshrunk, under each broken variant of the reference
settings.register_profile("selfcheck", max_examples=8, derandomize=True, database=None, deadline=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
settings.load_profile("ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev")

