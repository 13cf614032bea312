"""Benchmark protocols: DreamBench++ human alignment and the ORIDa identity test.

* :func:`load_dreambench_plus` / :func:`evaluate_dreambench` / :func:`format_table`:
  Krippendorff's alpha (:func:`pytest_masc.stats.agreement.human_alpha`, with a bootstrap CI)
  of MaSC's CP and PF, the global SigLIP2 cosines and any baseline metric against the
  human ratings, per method and pooled, with the human-vs-human ceiling.
* :func:`load_orida` / :func:`evaluate_identity` / :func:`format_identity`: identity AUC
  (:func:`pytest_masc.stats.agreement.identity_auc`) of CP and of the global image cosine.
* :class:`ProtocolSpec` / :func:`run_protocol`: which protocol on which data, run as one batch.

Importing this package imports nothing: each name loads its module (numpy for the data
and the statistics) on first use, so :mod:`.spec` stays light for the plugin's options.
Scoring needs a :class:`~pytest_masc.MaSC`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(("DROP_REASONS", "PUBLISHED_METHODS", "DreamBenchUnit", "ProtocolData", "load_dreambench_plus"),
                    ".dreambench_plus"),
    **dict.fromkeys(("MASC_METRICS", "ProtocolOutcome", "evaluate_dreambench", "evaluate_identity", "run_protocol"),
                    ".evaluate"),
    **dict.fromkeys(("IdentityData", "IdentityPair", "load_orida"), ".orida"),
    **dict.fromkeys(("PROTOCOL_KINDS", "ProtocolError", "ProtocolSpec", "parse_protocol_option"), ".spec"),
    **dict.fromkeys(("DIMENSION_TITLES", "HUMAN_CEILING", "POOLED", "Estimate", "Row", "format_identity", "format_table"),
                    ".tables"),
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .dreambench_plus import DROP_REASONS, PUBLISHED_METHODS, DreamBenchUnit, ProtocolData, load_dreambench_plus
    from .evaluate import MASC_METRICS, ProtocolOutcome, evaluate_dreambench, evaluate_identity, run_protocol
    from .orida import IdentityData, IdentityPair, load_orida
    from .spec import PROTOCOL_KINDS, ProtocolError, ProtocolSpec, parse_protocol_option
    from .tables import DIMENSION_TITLES, HUMAN_CEILING, POOLED, Estimate, Row, format_identity, format_table


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
