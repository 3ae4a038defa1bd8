"""Custom evaluators (placeholder until the full loader lands)."""
DEFAULTS = {"primary": None, "tolerance": None, "higher_is_better": True}
