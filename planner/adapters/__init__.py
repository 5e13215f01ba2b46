"""adapters layer of plan-experiment."""
