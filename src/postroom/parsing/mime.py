"""MIME plumbing: load the message, decode headers and text parts, pick bodies.

Built on the standard library's ``email`` package with ``policy.compat32``:
the ``default`` policy runs its full RFC 5322 header parser on every
Content-Type lookup (the feed parser itself makes several per part), which
made loading ~10x slower than compat32, and every header here is decoded
from its raw form anyway.
mail-parser (which wraps the same package) was evaluated and not used here:
it decodes bodies with the declared charset only and swallows the parts'
structure we need for body choice and attachments, so charset repair and body
selection are done directly:

- declared charsets are honoured, except ``iso-8859-1``/``us-ascii`` bodies
  with bytes 0x80-0x9F, which are really windows-1252;
- bodies declared ``utf-8`` that are not valid UTF-8 keep their valid
  sequences and decode the stray bytes as windows-1252 (latin-1 pasted in);
- undeclared 8-bit bodies and headers try UTF-8, then a guess, then
  windows-1252;
- headers are decoded from their raw form (RFC 2047 words, raw 8-bit bytes),
  so a broken header never raises.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.base64mime
import email.errors
import email.header
import email.policy
import email.quoprimime
import email.utils
import re
from email.message import Message

from charset_normalizer import from_bytes

from postroom.parsing import limits

#: Declared charsets that are, in practice, windows-1252 when C1 bytes occur.
_LATIN1_ALIASES = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "iso_8859-1", "us-ascii", "ascii"}
#: Declared charsets whose Windows superset is what the senders really use (as browsers decode them).
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932", "big5": "big5hkscs"}
_C1 = re.compile(rb"[\x80-\x9f]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_HIGH_BYTES = re.compile(rb"[\x80-\xff]")
_FOLD = re.compile(r"\r?\n[ \t]")
#: Runs of ASCII whitespace only: a non-breaking space in a subject is kept as written.
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_SURROGATE = re.compile("[\udc80-\udcff]")


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    """Decode the offending byte as windows-1252 (latin-1 for its 5 holes)."""
    assert isinstance(err, UnicodeDecodeError)
    byte = err.object[err.start : err.start + 1]
    return byte.decode("cp1252", errors="ignore") or byte.decode("latin-1"), err.start + 1


codecs.register_error("postroom-cp1252", _cp1252_fallback)


class _Part(Message):
    """A compat32 Message that works its content type out once: the feed parser and this stage ask
    each part ~20 times, and each answer re-scans the part's header fields. Whatever changes the
    fields or the default type forgets the answer.

    It also bounds the cost of hostile structure: a multipart or message part nested deeper than
    ``MAX_MIME_DEPTH`` reads as ``application/octet-stream`` (the feed parser then keeps its content
    as one opaque leaf instead of recursing, and checks every line against every open boundary), and
    parameters are split in linear time (the stdlib re-slices the header for every parameter)."""

    _ctype: str | None = None
    _depth = 0
    depth_capped = False

    def attach(self, payload) -> None:
        if isinstance(payload, _Part):
            payload._depth = self._depth + 1
        super().attach(payload)

    def get_content_type(self) -> str:
        if self._ctype is None:
            found = super().get_content_type()
            self.depth_capped = self._depth >= limits.MAX_MIME_DEPTH and found.startswith(("multipart/", "message/"))
            self._ctype = "application/octet-stream" if self.depth_capped else found
        return self._ctype

    def _get_params_preserve(self, failobj, header):
        value = self.get(header, None)
        if value is None:
            return failobj
        params = []
        for p in _split_params(str(value)):
            name, eq, val = p.partition("=")
            params.append((name.strip(), val.strip()) if eq else (p.strip(), ""))
        try:
            return email.utils.decode_params(params)
        except (TypeError, ValueError):  # RFC 2231 continuations numbered and not, or a 5,000-digit number
            return email.utils.decode_params(params[:1] + [p for p in params[1:] if "*" not in p[0]])

    def set_raw(self, name, value) -> None:
        self._ctype = None
        super().set_raw(name, value)

    def __setitem__(self, name, val) -> None:
        self._ctype = None
        super().__setitem__(name, val)

    def __delitem__(self, name) -> None:
        self._ctype = None
        super().__delitem__(name)

    def add_header(self, _name, _value, **_params) -> None:
        self._ctype = None
        super().add_header(_name, _value, **_params)

    def replace_header(self, _name, _value) -> None:
        self._ctype = None
        super().replace_header(_name, _value)

    def set_default_type(self, ctype) -> None:
        self._ctype = None
        super().set_default_type(ctype)


def _split_params(value: str) -> list[str]:
    """``email.message._parseparam`` in linear time: same pieces, counting quotes incrementally."""
    plist = []
    start, size = 0, len(value)
    while True:
        end = value.find(";", start)
        quotes, counted = 0, start
        while end > start:
            quotes += value.count('"', counted, end) - value.count('\\"', counted, end)
            counted = end
            if quotes % 2 == 0:
                break
            end = value.find(";", end + 1)
        if end < 0:
            end = size
        piece = value[start:end]
        if "=" in piece:
            i = piece.index("=")
            piece = piece[:i].strip().lower() + "=" + piece[i + 1 :].strip()
        plist.append(piece.strip())
        if end >= size:
            return plist
        start = end + 1


def load(raw: bytes) -> tuple[Message, bool]:
    """Parse bytes into a Message (policy compat32); True when the header block was repaired."""
    repaired = repair_header_block(raw)
    return email.message_from_bytes(repaired, _class=_Part, policy=email.policy.compat32), repaired is not raw


_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")
_MAX_HEADER_BLOCK = 512 * 1024


def repair_header_block(raw: bytes) -> bytes:
    """Fix what makes the stdlib end the headers early: a text line before the first field
    ("---- Original message ----") and folded lines that lost their leading blank.
    Returns ``raw`` itself when nothing needed fixing."""
    ends = [e for e in (raw.find(b"\n\n", 0, _MAX_HEADER_BLOCK), raw.find(b"\n\r\n", 0, _MAX_HEADER_BLOCK))
            if e != -1]
    if not ends:
        return raw
    end = min(ends)
    lines = raw[:end].split(b"\n")
    first = 1 if lines[0].startswith(b"From ") else 0
    dropped = 0
    while dropped < 3 and first < len(lines) - 1 and not _FIELD.match(lines[first]) \
            and _FIELD.match(lines[first + 1]):
        del lines[first]
        dropped += 1
    broken = [i for i in range(first + 1, len(lines))
              if lines[i].strip(b"\r") and not _FIELD.match(lines[i]) and lines[i][:1] not in b" \t"]
    if not dropped and not broken:
        return raw
    for i in broken:
        lines[i] = b" " + lines[i]
    return b"\n".join(lines) + raw[end:]


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


def _raw_bytes(value: str) -> bytes:
    """Undo the parser's surrogateescape so raw 8-bit header bytes come back."""
    return value.encode("utf-8", errors="surrogateescape")


def decode_header_value(value: str | None) -> str:
    """A header's text: RFC 2047 words and raw 8-bit bytes decoded, unfolded, without NULs.

    A NUL is never meaningful in a header and no database text column takes it.
    """
    return _decode_header_value(value).replace("\x00", "\ufffd")


def _decode_header_value(value: str | None) -> str:
    if not value:
        return ""
    if value.isascii() and "\n" not in value and "\r" not in value and "=?" not in value:
        return value.strip()  # most headers: nothing to unfold or decode
    value = _FOLD.sub(" ", str(value)).replace("\r", "").replace("\n", "")
    if has_surrogates(value):
        value = guess_decode(_raw_bytes(value))
    if "=?" not in value:
        return value.strip()
    # Outlook and others put encoded words inside quotes and words; split them out.
    spaced = _ENCODED_WORD.sub(lambda m: f" {m.group(0)} ", value)
    try:
        chunks = decode_header(spaced)
    except (ValueError, AssertionError, LookupError, email.errors.HeaderParseError):  # a broken word stays as sent
        return value.strip()
    out = []
    for chunk, charset in chunks:
        out.append(decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk)
    return _SPACES.sub(" ", "".join(out)).strip()


_WORD_HEAD = re.compile(r"=\?([^?]*)\?([qQbB])\?")


def decode_header(header: str) -> list[tuple[bytes | str, str | None]]:
    """``email.header.decode_header`` in linear time, same result (and same HeaderParseError).

    The standard library's is quadratic in the number of encoded words (list ``pop(0)``, ``del``
    and bytes ``+=``), and its word regex rescans a line for every ``=?`` without a closing ``?=``."""
    if not _has_encoded_word(header):
        return [(header, None)]
    words: list[tuple[str, str | None, str | None]] = []
    for line in header.splitlines():
        pos, first = 0, True
        while True:
            head = _WORD_HEAD.search(line, pos)
            end = line.find("?=", head.end()) if head else -1
            unencoded = line[pos:head.start()] if end != -1 else line[pos:]
            if first:
                unencoded, first = unencoded.lstrip(), False
            if unencoded:
                words.append((unencoded, None, None))
            if end == -1:
                break
            words.append((line[head.end():end], head.group(2).lower(), head.group(1).lower()))
            pos = end + 2
    kept = [w for n, w in enumerate(words)
            if not (0 < n < len(words) - 1 and words[n + 1][1] and words[n - 1][1] and w[0].isspace())]
    collapsed: list[tuple[bytes, str | None]] = []
    run: list[bytes] = []
    last_charset: str | None = None
    for encoded, encoding, charset in kept:
        word = _decode_word(encoded, encoding)
        if run and charset != last_charset:
            collapsed.append(((b" " if last_charset is None else b"").join(run), last_charset))
            run = []
        run.append(word)
        last_charset = charset
    collapsed.append(((b" " if last_charset is None else b"").join(run), last_charset))
    return collapsed


def _decode_word(encoded: str, encoding: str | None) -> bytes:
    if encoding is None:
        return bytes(encoded, "raw-unicode-escape")
    if encoding == "q":
        return bytes(email.quoprimime.header_decode(encoded), "raw-unicode-escape")
    encoded += "==="[: (4 - len(encoded) % 4) % 4]
    try:
        return email.base64mime.decode(encoded)
    except binascii.Error as exc:
        raise email.errors.HeaderParseError("Base64 decoding error") from exc


def _has_encoded_word(header: str) -> bool:
    """Whether the stdlib's word regex matches anywhere: a head (whose charset may run over a line
    break) with ``?=`` after it on its own line. Each line is searched for ``?=`` once."""
    pos, failed_until = 0, -1
    while (head := _WORD_HEAD.search(header, pos)) is not None:
        end = head.end()
        if end > failed_until:
            line_end = header.find("\n", end)
            line_end = len(header) if line_end == -1 else line_end
            if header.find("?=", end, line_end) != -1:
                return True
            failed_until = line_end
        pos = head.start() + 1
    return False


def header_index(msg: Message) -> dict[str, list[str]]:
    """Raw header values by lower-cased name, in order: one pass over the fields instead of one per lookup."""
    index: dict[str, list[str]] = {}
    for key, value in msg.raw_items():
        index.setdefault(key.lower(), []).append(str(value))
    return index


def raw_header(msg: Message, name: str) -> str | None:
    """First raw value of a header, bypassing the policy's header classes."""
    lname = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == lname:
            return str(value)
    return None


def header(msg: Message, name: str) -> str:
    """Decoded text of a header (empty when absent)."""
    return decode_header_value(raw_header(msg, name))


def part_bytes(part: Message) -> bytes:
    """Transfer-decoded payload bytes of a leaf part (never raises)."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, AssertionError, LookupError, TypeError):
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", errors="surrogateescape") if isinstance(payload, str) else b""


def part_text(part: Message) -> str:
    """Decoded text of a text/* part with charset repair; NULs become U+FFFD as in headers."""
    return decode_bytes(part_bytes(part), charset(part)).replace("\x00", "\ufffd")


def content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except (ValueError, IndexError):
        return "application/octet-stream"


def disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except (ValueError, IndexError):
        return None


def filename(part: Message, charset_hint: str | None = None) -> str | None:
    """The part's file name from Content-Disposition or Content-Type (RFC 2231, RFC 2047).

    Raw 8-bit names (no RFC 2047/2231) are decoded with ``charset_hint`` (the charset the
    sender declared elsewhere in the message) or a guess: compat32 would turn them into U+FFFD."""
    raws = [raw_header(part, h) or "" for h in ("Content-Disposition", "Content-Type")]
    if not any("name" in r.lower() for r in raws):
        return None  # most body parts: skip the stdlib's parameter parsing (called for every leaf)
    if any(has_surrogates(r) for r in raws):
        part = _decoded_params(raws, charset_hint)
    missing = object()
    try:
        name = part.get_param("filename", missing, "content-disposition")
        if name is missing:
            name = part.get_param("name", missing)
        name = None if name is missing else collapse_rfc2231(name).strip()
        name = name or part.get_param("name")
    except (ValueError, IndexError, TypeError, LookupError):
        name = None
    if isinstance(name, tuple):
        name = collapse_rfc2231(name)
    return decode_header_value(str(name)) if name else None


def collapse_rfc2231(value: str | tuple) -> str:
    """``email.utils.collapse_rfc2231_value`` decoding through :func:`decode_bytes`: the stdlib raises
    on charset names like ``undefined`` and shows the bytes as Latin-1 for unknown ones."""
    if not isinstance(value, tuple) or len(value) != 3:
        return email.utils.unquote(str(value))
    charset, _, text = value
    return decode_bytes(bytes(text, "raw-unicode-escape"), charset or "us-ascii")


def has_surrogates(value: str) -> bool:
    """Raw 8-bit bytes the parser kept as surrogate escapes."""
    return not value.isascii() and _SURROGATE.search(value) is not None


def _decoded_params(raws: list[str], charset_hint: str | None) -> Message:
    """A header-only copy of Content-Disposition/Content-Type with raw 8-bit bytes decoded."""
    copy = Message()
    for name, value in zip(("Content-Disposition", "Content-Type"), raws, strict=True):
        if value:
            data = _raw_bytes(value)
            copy[name] = decode_bytes(data, charset_hint) if charset_hint else guess_decode(data)
    return copy


def charset(part: Message) -> str | None:
    """The part's declared charset parameter, if any."""
    try:
        found = part.get_param("charset")
    except (ValueError, IndexError):
        return None
    if isinstance(found, tuple):
        found = collapse_rfc2231(found)
    return found if isinstance(found, str) and found.strip() else None


def is_attachment(part: Message) -> bool:
    """A leaf that is not a body: declared attachment, named, or non-text."""
    ctype = content_type(part)
    disp = disposition(part)
    if ctype == "message/rfc822":
        return True
    if part.is_multipart() or ctype in ("message/delivery-status", "text/rfc822-headers"):
        return False
    if disp == "attachment":
        return True
    if ctype in ("text/plain", "text/html"):
        return bool(filename(part)) and disp != "inline"
    return not ctype.startswith("multipart/")


def bodies(msg: Message) -> tuple[str, str | None]:
    """The plain text and HTML bodies, joining inline text parts of mixed mail."""
    texts: list[str] = []
    htmls: list[str] = []
    _collect(msg, texts, htmls)
    return "\n".join(t for t in texts if t), ("\n".join(htmls) if htmls else None)


def _collect(part: Message, texts: list[str], htmls: list[str]) -> None:
    ctype = content_type(part)
    if ctype == "message/rfc822":
        return
    if part.is_multipart():
        children = [c for c in _children(part) if isinstance(c, Message)]
        if ctype == "multipart/alternative":
            _collect_alternative(children, texts, htmls)
            return
        for child in children:
            _collect(child, texts, htmls)
        return
    if is_attachment(part):
        return
    if ctype == "text/html":
        htmls.append(part_text(part))
    elif ctype in ("text/plain", "text/enriched", "text/markdown") or ctype.startswith("text/x-"):
        texts.append(part_text(part))


def _collect_alternative(children: list[Message], texts: list[str], htmls: list[str]) -> None:
    """From alternatives keep one plain and one HTML rendering (the richest last)."""
    plain: list[str] = []
    html: list[str] = []
    for child in children:
        sub_t: list[str] = []
        sub_h: list[str] = []
        _collect(child, sub_t, sub_h)
        plain, html = (sub_t or plain), (sub_h or html)
    texts.extend(plain)
    htmls.extend(html)


def _children(part: Message) -> list:
    payload = part.get_payload()
    return payload if isinstance(payload, list) else []


def walk_leaves(msg: Message, into_messages: bool = False):
    """Leaf parts in order; attached messages are leaves unless asked otherwise."""
    stack = [msg]
    while stack:
        part = stack.pop()
        if part.is_multipart() and (into_messages or content_type(part) != "message/rfc822" or part is msg):
            stack.extend(reversed([c for c in _children(part) if isinstance(c, Message)]))
        else:
            yield part


def defects(msg: Message) -> list[str]:
    """The email package's defects over the whole tree, by class name, and where nesting was cut."""
    found: list[str] = []
    for part in msg.walk():
        found.extend(type(d).__name__ for d in getattr(part, "defects", []))
        if content_type(part) and getattr(part, "depth_capped", False):
            found.append(f"mime-truncated: parts nested deeper than {limits.MAX_MIME_DEPTH} levels kept as one "
                         "attachment")
    return list(dict.fromkeys(found))
