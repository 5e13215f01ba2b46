"""core layer of plan-experiment."""
