"""moe2: expert selection for collaborative inference across edge LLMs."""

__version__ = "0.1.0"
