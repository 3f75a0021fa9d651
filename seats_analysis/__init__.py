"""SEATS (stage-adaptive token selection) for omni-modal LLMs: probe a model, derive its schedule, prune, measure."""
__version__ = "0.1.0"
