"""Test support: broken targets and adapters for the self-checks (not shipped with the package)."""
