"""The plan: a loaded catalog resolved into targets, groups and variables (pure)."""
