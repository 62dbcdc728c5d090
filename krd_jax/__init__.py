"""krd_jax: Knowledge Rectification Distillation (KRDistill) for long-tailed data, in JAX."""

__version__ = "0.1.0"
