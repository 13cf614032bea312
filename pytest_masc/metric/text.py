"""Subject stripping for the prompt-following (PF) text.

The subject is the same in every prompt of a personalization run, so encoding it would make
PF partly measure identity instead of the scene. MaSC removes it before text encoding,
with the paper's regular-expression rule: the first form that occurs of

1. ``(a|an|the) <subject>``, then
2. the bare ``<subject>``,

is removed everywhere (case-insensitive, on word boundaries), then whitespace is collapsed.
A DreamBooth identifier is part of the subject the caller passes (``subject="sks dog"``
strips "a sks dog"). Prompt and subject are compared in Unicode normal form C, so a subject
typed with a combining accent (``"cafe\u0301"``) is found in a prompt with the precomposed
letter (``"café"``) and the other way round; ASCII and NFC text, what the paper's code
sees, is unchanged by that. Case is compared as Python's ``re.IGNORECASE`` does (``É``
matches ``é``, ``ß`` does not match ``SS``), as the paper's code does. This module
imports nothing heavy.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """``text`` with every run of white space made one space, and stripped at both ends."""
    return _WHITESPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class StrippedPrompt:
    """The text the PF head encodes, and whether the subject was found in the prompt."""

    text: str
    subject_found: bool


def _subject_patterns(subject: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    name = re.escape(subject.strip())
    return (
        re.compile(rf"\b(?:a|an|the)\s+{name}\b", re.IGNORECASE),
        re.compile(rf"\b{name}\b", re.IGNORECASE),
    )


def strip_subject(prompt: str, subject: str | None) -> StrippedPrompt:
    """Remove the subject from ``prompt`` by the paper's rule.

    Args:
        prompt: the generation prompt.
        subject: the subject's name, with its identifier if the prompts use one
            (``"dog"``, ``"sks dog"``). ``None`` keeps the prompt exactly as given.

    Returns:
        ``StrippedPrompt(text, subject_found)``. Without a subject, ``text`` is ``prompt``
        unchanged; with one, it is in normal form C with whitespace collapsed, whether or
        not the subject was found.

    >>> strip_subject("A photo of a dog on the beach", "dog").text
    'A photo of on the beach'
    """
    if subject is None:
        return StrippedPrompt(prompt, False)
    prompt = unicodedata.normalize("NFC", prompt)
    if not subject.strip():
        return StrippedPrompt(collapse_whitespace(prompt), False)
    for pattern in _subject_patterns(unicodedata.normalize("NFC", subject)):
        if pattern.search(prompt):
            return StrippedPrompt(collapse_whitespace(pattern.sub("", prompt)), True)
    return StrippedPrompt(collapse_whitespace(prompt), False)
