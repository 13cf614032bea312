"""The metric: SigLIP / SigLIP2 features, MaSC's math, loading, batching and caching.

Depends on torch, transformers, numpy and PIL, never on pytest. Importing this package
imports none of them: ``pytest_masc.metric.scorer`` (and with it torch) loads on first use
of :class:`~pytest_masc.metric.scorer.MaSC`.
"""
