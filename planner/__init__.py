"""plan-experiment: plan, estimate, submit and follow LLM fine-tuning experiments on SLURM."""

__version__ = "0.1.0"
