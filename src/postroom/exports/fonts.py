"""Which installed font draws which character, so the PDF embeds only the fonts a conversation needs.

DejaVu Sans is the main font (Latin, Greek, Cyrillic and many symbols); Noto
fonts, when installed (Debian: fonts-noto-core, fonts-noto-cjk,
fonts-noto-color-emoji), cover the other scripts, CJK and emoji. Their
character maps are read once per process (about 0.2 s for ~150 fonts); a
character no installed font has is replaced by a visible marker instead of
being dropped.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont

log = logging.getLogger(__name__)

MAIN_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
NOTO_DIRS = (Path("/usr/share/fonts/truetype/noto"), Path("/usr/share/fonts/opentype/noto"),
             Path("/usr/share/fonts/noto"), Path("/usr/share/fonts/google-noto"))
# Preferred first: the general Noto Sans, then per-script faces, CJK, symbols, music, emoji last.
NOTO_PATTERNS = ("NotoSans-Regular.ttf", "NotoSans[A-Z]*-Regular.ttf", "NotoSansCJK-Regular.ttc",
                 "NotoSansCJK*-Regular.otf", "NotoMusic-Regular.ttf", "NotoColorEmoji.ttf")
# Invisible by definition (joiners, variation selectors, bidi marks, tags): left out when no font has them.
IGNORABLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


def marker(char: str) -> str:
    """What stands in for a character no installed font can draw: visible, and naming the code point."""
    return f"[U+{ord(char):04X}]"


@dataclass(frozen=True)
class FontFile:
    name: str
    path: Path
    collection_number: int = 0


@dataclass(frozen=True)
class Fonts:
    """The main font (``None``: only the PDF core font, Latin-1) and the fallbacks with their characters."""

    regular: Path | None
    bold: Path | None
    main_chars: frozenset[int]
    fallbacks: tuple[tuple[FontFile, frozenset[int]], ...]

    def plan(self, texts: Iterable[str]) -> tuple[list[FontFile], dict[str, str]]:
        """The fallback fonts these texts need, and the replacement of each character no font has."""
        needed: dict[str, FontFile] = {}
        missing: dict[str, str] = {}
        seen: set[str] = set()
        for text in texts:
            for char in set(text) - seen:
                seen.add(char)
                code = ord(char)
                if char in "\n\t" or code in self.main_chars or (self.regular is None and code < 256):
                    continue
                font = next((f for f, chars in self.fallbacks if code in chars), None) if self.regular else None
                if font is not None:
                    needed.setdefault(font.name, font)
                elif unicodedata.category(char) in IGNORABLE_CATEGORIES or _is_variation_selector(code):
                    missing[char] = ""
                else:
                    missing[char] = marker(char)
        return list(needed.values()), missing


def _is_variation_selector(code: int) -> bool:
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def _chars(path: Path, number: int = 0) -> frozenset[int]:
    font = TTFont(str(path), fontNumber=number, lazy=True)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


def _noto_files() -> list[FontFile]:
    found: dict[str, FontFile] = {}
    for pattern in NOTO_PATTERNS:
        for folder in NOTO_DIRS:
            for path in sorted(folder.glob(pattern)) if folder.is_dir() else ():
                found.setdefault(path.stem, FontFile(path.stem.replace("-", ""), path))
    return list(found.values())


@functools.cache
def installed() -> Fonts:
    """Look the fonts up once per process; a broken font file is skipped with a warning, not fatal."""
    regular = bold = None
    for folder in MAIN_DIRS:
        if (folder / "DejaVuSans.ttf").exists() and (folder / "DejaVuSans-Bold.ttf").exists():
            regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
            break
    main_chars = _chars(regular) if regular else frozenset()
    fallbacks = []
    for font in _noto_files():
        try:
            chars = _chars(font.path, font.collection_number)
        except Exception as exc:
            log.warning("font %s skipped for PDF exports: %s", font.path, exc)
            continue
        if chars - main_chars:
            fallbacks.append((font, chars))
    if regular is None:
        log.warning("DejaVu Sans is not installed (Debian: fonts-dejavu-core): PDF exports mark every "
                    "character outside Latin-1")
    return Fonts(regular, bold, main_chars, tuple(fallbacks))
