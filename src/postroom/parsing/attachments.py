"""Attachments: safe names, hashes, inline/attached, and a type check on the bytes.

The type check is a small magic-number table (no libmagic: it is a system
library the gateway hosts may lack, and only risky types matter here):
executables, scripts, OLE/ZIP containers, PDFs, images and TNEF. A declared
type that disagrees with the bytes for a risky type is flagged.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from email.message import Message

from tnefparse.tnef import TNEF

from postroom.model import Attachment
from postroom.parsing import headers, mime

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "application/x-msdownload"),
    (b"\x7fELF", "application/x-executable"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\x78\x9f\x3e\x22", "application/vnd.ms-tnef"),
    (b"#!", "text/x-shellscript"),
    (b"{\\rtf", "application/rtf"),
)
_EXECUTABLE_EXT = {
    "exe", "com", "scr", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "ps1", "msi", "msp",
    "jar", "hta", "cpl", "lnk", "reg", "dll", "iso", "img", "appx", "sh",
}
_MACRO_EXT = {"docm", "xlsm", "pptm", "dotm", "xltm", "xlam"}
_FILE_LIKE = re.compile(r"^[\w-]{1,64}\.[A-Za-z0-9]{2,5}$")
#: A winmail.dat is unpacked only this far: its files count against the same bytes.
_MAX_TNEF = 50_000_000
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]+')


def safe_filename(name: str | None, content_type: str) -> str:
    """A file name without directories or control characters, never empty."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 190] + dot + ext[:9]) if dot and len(ext) < 10 else name[:200]
    if not name:
        ext = {"message/rfc822": ".eml", "text/plain": ".txt"}.get(content_type) or \
            mimetypes.guess_extension(content_type) or ".bin"
        name = "attachment" + ext
    return name


def detect_type(data: bytes) -> str | None:
    """Type from magic bytes, or None when not one of the known signatures."""
    for magic, ctype in _MAGIC:
        if data.startswith(magic):
            return ctype
    return None


def _flags(filename: str, declared: str, detected: str | None) -> tuple[str, ...]:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    flags = []
    if filename.lower() == "winmail.dat" or declared == "application/ms-tnef" or \
            detected == "application/vnd.ms-tnef":
        flags.append("tnef")
    if ext in _EXECUTABLE_EXT or detected in ("application/x-msdownload", "application/x-executable",
                                              "application/x-mach-binary", "text/x-shellscript"):
        flags.append("executable")
    if ext in _MACRO_EXT:
        flags.append("macro")
    if detected and _mismatch(declared, ext, detected):
        flags.append("type-mismatch")
    return tuple(flags)


def _mismatch(declared: str, ext: str, detected: str) -> bool:
    """Only risky disagreements count: executables/containers posing as documents or images."""
    if detected in ("application/x-msdownload", "application/x-executable", "application/x-mach-binary"):
        return declared not in ("application/octet-stream", "application/x-msdownload",
                                "application/x-dosexec", "application/x-msdos-program") or ext not in _EXECUTABLE_EXT
    if declared.startswith("image/") and detected.startswith("application/"):
        return True
    return declared == "application/pdf" and detected != "application/pdf"


def _content_id(part: Message) -> str | None:
    value = headers.raw_header(part, "Content-ID")
    if not value:
        return None
    value = " ".join(value.split()).strip().strip("<>").strip()
    return value or None


def _data(part: Message) -> bytes:
    if mime.content_type(part) != "message/rfc822":
        return mime.part_bytes(part)
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        try:
            return inner.as_bytes()
        except (UnicodeError, LookupError, ValueError, TypeError):
            return str(inner).encode("utf-8", errors="surrogateescape")
    return mime.part_bytes(part)


def from_part(part: Message, cid_refs: set[str], charset_hint: str | None = None) -> Attachment:
    """One Attachment for a non-body leaf part (``charset_hint`` decodes raw 8-bit names)."""
    declared = mime.content_type(part)
    data = _data(part)
    content_id = _content_id(part)
    filename = safe_filename(mime.filename(part, charset_hint) or _message_name(part) or _cid_name(content_id),
                             declared)
    detected = detect_type(data)
    disposition = mime.disposition(part)
    inline = disposition == "inline" or (
        disposition is None and content_id is not None and content_id.lower() in cid_refs
    )
    return Attachment(
        filename=filename,
        content_type=declared,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        inline=inline,
        content_id=content_id,
        detected_type=detected,
        flags=_flags(filename, declared, detected),
        data=data,
    )


def _cid_name(content_id: str | None) -> str | None:
    """Outlook names unnamed inline images only in their Content-ID ("image001.png@01DA…")."""
    local = (content_id or "").split("@", 1)[0]
    return local if _FILE_LIKE.match(local) else None


def _message_name(part: Message) -> str | None:
    """An attached message is named after its subject, as mail clients do."""
    if mime.content_type(part) != "message/rfc822":
        return None
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    subject = headers.header(inner, "Subject") if isinstance(inner, Message) else ""
    return f"{subject or 'message'}.eml"


def collect(msg: Message, cid_refs: set[str]) -> tuple[Attachment, ...]:
    """All attachments of a message (attached messages are one attachment each).

    A single-part message can be an attachment too: a scanner's mail whose whole body is
    ``application/pdf``, an S/MIME ``smime.p7m``, a phone's lone ``image/jpeg``."""
    parts = [p for p in mime.walk_leaves(msg) if mime.is_attachment(p)]
    if not parts:
        return ()  # most mail: no need for the charset hint, which reads every leaf's parameters
    hint = mime.charset(msg) or next((c for p in mime.walk_leaves(msg) if (c := mime.charset(p))), None)
    found = [from_part(p, cid_refs, hint) for p in parts]
    return tuple(found + [inner for att in found if "tnef" in att.flags for inner in unpack_tnef(att)])


def unpack_tnef(att: Attachment) -> list[Attachment]:
    """The files inside a winmail.dat (Outlook's TNEF wrapper), flagged ``from-tnef``; none when unreadable.
    The winmail.dat itself stays, so nothing is lost when tnefparse reads only part of it."""
    if not att.data or len(att.data) > _MAX_TNEF:
        return []
    try:
        tnef = TNEF(att.data)
        files = [(a.long_filename() or a.name or "", a.data) for a in tnef.attachments]
    except Exception:  # a third-party decoder on hostile bytes: a failure means "no files"
        return []
    out = []
    for name, data in files:
        data = bytes(data or b"")
        filename = safe_filename(name if isinstance(name, str) else name.decode("latin-1"), "application/octet-stream")
        declared = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        detected = detect_type(data)
        out.append(Attachment(filename=filename, content_type=declared, size=len(data),
                              sha256=hashlib.sha256(data).hexdigest(), detected_type=detected,
                              flags=(*_flags(filename, declared, detected), "from-tnef"), data=data))
    return out
