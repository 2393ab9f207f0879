"""Charsets: which codec a charset name from mail means, and decoding text bytes with the usual lies repaired.

- declared charsets are honoured, except ``iso-8859-1``/``us-ascii`` bodies
  with bytes 0x80-0x9F, which are really windows-1252;
- bodies declared ``utf-8`` that are not valid UTF-8 keep their valid
  sequences and decode the stray bytes as windows-1252 (latin-1 pasted in);
- undeclared 8-bit bodies and headers try UTF-8, then a guess, then
  windows-1252.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

#: Declared charsets that are, in practice, windows-1252 when C1 bytes occur.
_LATIN1_ALIASES = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "iso_8859-1", "us-ascii", "ascii"}
#: Declared charsets whose Windows superset is what the senders really use (as browsers decode them).
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932", "big5": "big5hkscs"}
_C1 = re.compile(rb"[\x80-\x9f]")
_HIGH_BYTES = re.compile(rb"[\x80-\xff]")
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    """Decode the offending byte as windows-1252 (latin-1 for its 5 holes)."""
    assert isinstance(err, UnicodeDecodeError)
    byte = err.object[err.start : err.start + 1]
    return byte.decode("cp1252", errors="ignore") or byte.decode("latin-1"), err.start + 1


codecs.register_error("postroom-cp1252", _cp1252_fallback)


#: Codec names Python calls text encodings that no mail client means: they raise on ordinary bytes or
#: decode escape sequences instead of characters.
_NOT_MAIL_CODECS = {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"}


def text_codec(charset: str | None) -> str | None:
    """The Python codec for a charset name taken from mail, or None when it names no text encoding.

    Every charset a sender writes (part parameter, encoded word) is looked up here: ``codecs.lookup``
    also knows bytes-to-bytes codecs (hex, base64, zlib, rot13...), which raise on ``bytes.decode``,
    so those count as unknown charsets and the bytes are repaired as text instead."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = {"utf8": "utf-8", "unicode-1-1-utf-7": "utf-7", "x-unknown": "", "unknown-8bit": ""}.get(name, name)
    if not name:
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL inside the charset name
        return None
    if not info._is_text_encoding or info.name in _NOT_MAIL_CODECS:
        return None
    return _SUPERSETS.get(info.name, info.name)


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode text bytes with the declared charset, repairing common lies."""
    if not _HIGH_BYTES.search(data) and (charset is None or text_codec(charset) in (None, "ascii", "utf-8")):
        return data.decode("ascii", errors="replace")
    declared = (charset or "").strip().strip("\"'").lower()
    codec = text_codec(charset)
    if declared in _LATIN1_ALIASES or codec in ("latin-1", "iso8859-1", "ascii"):
        if declared in ("us-ascii", "ascii") and _utf8_ok(data):
            return data.decode("utf-8")
        return data.decode("cp1252" if _C1.search(data) else "latin-1", errors="postroom-cp1252")
    if codec == "utf-8":
        return data.decode("utf-8", errors="postroom-cp1252")
    if codec:
        try:
            return data.decode(codec)
        except UnicodeError:
            if codec == "iso2022_jp":
                return _iso2022jp_as_cp932(data)
        try:
            return data.decode(codec, errors="replace")
        except UnicodeError:  # a codec that fails even with errors="replace" (utf-7 state, ...)
            pass
    return guess_decode(data)


def _iso2022jp_as_cp932(data: bytes) -> str:
    """ISO-2022-JP with the Windows (NEC/IBM) extensions, e.g. circled digits, which Python's
    iso2022_jp rejects: re-encode the JIS X 0208 pairs as Shift_JIS and decode as cp932 (what
    browsers do, WHATWG encoding standard)."""
    out = bytearray()
    mode, i, n = "ascii", 0, len(data)
    while i < n:
        if data[i] == 0x1B and i + 2 < n:
            seq = data[i + 1 : i + 3]
            mode = {b"(B": "ascii", b"(J": "ascii", b"(I": "kana", b"$@": "jis", b"$B": "jis"}.get(bytes(seq), mode)
            i += 3
            continue
        byte = data[i]
        if mode == "jis" and 0x21 <= byte <= 0x7E and i + 1 < n and 0x21 <= data[i + 1] <= 0x7E:
            j1, j2 = byte, data[i + 1]
            s1 = ((j1 - 0x21) >> 1) + 0x81
            s1 += 0x40 if s1 > 0x9F else 0
            s2 = j2 + (0x1F if j1 % 2 else 0x7E)
            s2 += 1 if j1 % 2 and s2 >= 0x7F else 0
            out += bytes((s1, s2))
            i += 2
            continue
        out.append(byte + 0x80 if mode == "kana" and 0x21 <= byte <= 0x5F else byte)
        i += 1
    return out.decode("cp932", errors="replace")


def _utf8_ok(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def guess_decode(data: bytes) -> str:
    """Undeclared 8-bit text: UTF-8 (stray bytes as cp1252), else a confident guess, else cp1252."""
    if _utf8_ok(data):
        return data.decode("utf-8")
    if _UTF8_SEQUENCE.search(data):
        return data.decode("utf-8", errors="postroom-cp1252")
    best = from_bytes(data[:20000]).best() if len(data) > 40 else None
    if best is not None and best.encoding not in ("utf_8", "ascii") and best.chaos < 0.1:
        try:
            return data.decode(best.encoding)
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("cp1252", errors="postroom-cp1252")
