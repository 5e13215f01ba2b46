"""cli layer of plan-experiment."""
