"""Subjects: the key used to compare them, and the reference tag of outbound subjects.

``subject_key`` removes what mail clients add when replying or forwarding,
in many languages and in the shapes they produce: ``Re:``, ``RE :`` (French
typography), ``Re[2]:``, ``Re^3:``, ``AW: WG: Antw:``, ``Fwd:`` inside
brackets (``[Fwd: …]``), trailing ``(fwd)``, full-width colons, and our own
``[#A1B2C3]`` tag, repeated in any order. What is left is NFKC-normalised,
whitespace-collapsed and case-folded.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
REFERENCE_LENGTH = 12  # 60 bits: see docs/threading.md for what guessing one costs
LEGACY_REFERENCE_LENGTH = 6  # references of conversations created before 12 characters, still recognised
MAX_SUBJECT_TAGS = 3  # a subject sprayed with tags is read no further than this
MAX_KEYED_CHARS = 2000  # what subject keys are made of: a conversation's stored subject is no longer

# Reply and forward prefixes, longest first within a language so "antw" is not read as "an".
PREFIXES = (
    # English, and what most clients write whatever their language
    "re", "fwd", "fw",
    # French: Réponse / Transfert / Référence
    "réf", "ref", "rép", "tr", "trs",
    # German: Antwort / Weitergeleitet
    "aw", "antwort", "wg", "wtrlt",
    # Dutch: Antwoord / Doorsturen
    "antw", "doorst", "fw",
    # Scandinavian: Svar / Vidaresänd / Videresendt
    "sv", "vs", "vb", "vl", "vidaresänd", "videresend",
    # Finnish: Vastaus / Välitetty
    "vast", "välitetty",
    # Spanish / Portuguese / Italian: Respuesta, Reenviado, Resposta, Encaminhada, Risposta, Inoltro
    "rv", "res", "enc", "rif", "r", "i", "inoltro",
    # Polish / Czech / Slovak / Hungarian / Turkish / Icelandic / Estonian / Latvian / Lithuanian
    "odp", "pd", "odg", "přep", "fwd", "vá", "továbbítás", "ynt", "ilt", "İlt", "sv", "fs", "vs", "tr", "ats", "pers",
    # Greek, Russian / Ukrainian, Hebrew, Arabic
    "απ", "σχετ", "πρθ", "отв", "ответ", "пересл", "השב", "הועבר", "رد", "توجيه",
    # Chinese, Japanese, Korean
    "回复", "回覆", "答复", "答覆", "转发", "轉寄", "转寄", "返信", "転送", "회신", "전달",
)
_PREFIX_WORDS = "|".join(sorted({re.escape(p) for p in PREFIXES}, key=len, reverse=True))
_PREFIX = re.compile(
    rf"^\s*(?:{_PREFIX_WORDS})\.?\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*",
    re.IGNORECASE,
)
_BRACKET_FORWARD = re.compile(rf"^\s*\[\s*(?:{_PREFIX_WORDS})\s*[:：]\s*(.*?)\s*\]\s*$", re.IGNORECASE)
_TRAILER = re.compile(r"\s*\((?:fwd|fw|forw|forward)\)\s*$", re.IGNORECASE)
_REFERENCE = rf"[0-9A-Za-z]{{{REFERENCE_LENGTH}}}|[0-9A-Za-z]{{{LEGACY_REFERENCE_LENGTH}}}"
_TAG = re.compile(rf"\[#({_REFERENCE})\]")
_LEADING_TAG = re.compile(rf"^\s*\[(?:#(?:{_REFERENCE})|ext(?:ern(?:al)?)?|extern|externe?|spam|external email)\]\s*",
                          re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def strip_prefixes(subject: str) -> tuple[str, bool]:
    """The subject without reply/forward prefixes and tags, and whether any prefix was removed."""
    text = unicodedata.normalize("NFKC", (subject or "")[:MAX_KEYED_CHARS])
    text = _WHITESPACE.sub(" ", text).strip()
    removed = False
    for _ in range(50):
        before = text
        text = _TAG.sub(" ", text).strip() if _TAG.search(text) else text
        text = _LEADING_TAG.sub("", text)
        bracketed = _BRACKET_FORWARD.match(text)
        if bracketed:
            text = bracketed.group(1)
        stripped = _PREFIX.sub("", text, count=1)
        trailer = _TRAILER.sub("", stripped)
        if stripped != text or trailer != stripped or bracketed:
            removed = True
        text = _WHITESPACE.sub(" ", trailer).strip()
        if text == before:
            break
    return text, removed


def subject_key(subject: str) -> str:
    """What two subjects of one conversation have in common: prefixes and tags gone, case-folded."""
    return strip_prefixes(subject)[0].casefold()[:500]


def is_reply_subject(subject: str) -> bool:
    return strip_prefixes(subject)[1]


def reference_tag(reference: str) -> str:
    """``[#7KQ2M9XR4T3W]``, as put in outbound subjects."""
    return f"[#{reference}]"


def tag_subject(subject: str, reference: str) -> str:
    """The subject with the conversation's tag appended once (other tags removed)."""
    base = _WHITESPACE.sub(" ", _TAG.sub(" ", subject or "")).strip()
    return f"{base} {reference_tag(reference)}".strip()


def find_references(subject: str) -> tuple[str, ...]:
    """The first ``MAX_SUBJECT_TAGS`` ``[#…]`` references of a subject, upper-cased, in order.

    Only the first few: a subject sprayed with thousands of guessed tags is
    one guess per tag looked at, not one per tag written.
    """
    found = itertools.islice(_TAG.finditer(subject or ""), MAX_SUBJECT_TAGS)
    return tuple(dict.fromkeys(m.group(1).upper() for m in found))
