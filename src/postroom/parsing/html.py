"""HTML bodies: sanitise for display (nh3) and render to text for trimming.

nh3 (ammonia) is the sanitiser: a fixed allow-list of tags and attributes,
no scripts or event handlers, only ``cid:`` (inline attachments) and
``data:`` images so remote tracking pixels are dropped, and only harmless CSS
properties. HTML -> text is a small structure-aware renderer on the standard
library's HTMLParser (html2text/inscriptis would add a dependency for the
same result): block elements break lines, lists get bullets, table cells are
separated, ``<blockquote>`` lines get ``> `` and quote containers of mail
clients (Gmail ``gmail_quote``, Outlook ``divRplyFwdMsg`` / top-bordered
header div, Apple ``blockquote type=cite``, Thunderbird ``moz-cite-prefix``,
Yahoo ``yahoo_quoted``) are marked so reply trimming can cut there.
"""

from __future__ import annotations

import html.parser as html_parser
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import ClassVar

import nh3

from postroom.parsing import limits

#: Line inserted (only when asked) where a client's quoted history starts.
QUOTE_MARK = "\u2063postroom-quote\u2063"

_BLOCK = {"p", "div", "br", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr",
          "blockquote", "section", "article", "header", "footer", "address", "dl", "dt", "dd", "center"}
_SKIP = {"script", "style", "head", "title", "template", "noscript", "xml"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"}
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "divrplyfwdmsg", "protonmail_quote",
                  "ms-outlook-mobile-reference-message", "zmail_extra")
_QUOTE_IDS = ("divrplyfwdmsg", "appendonsend", "ymail_android_signature", "mail-editor-reference-message-container")
_WHITESPACE = re.compile(r"[ \t\r\n\f]+")
_DEPTH_TAG = re.compile(r"\x00Q(\d+)\x00")
_CID = re.compile(r"cid:([^\"'\s>)]+)", re.I)
_OUTLOOK_BORDER = re.compile(r"border-top\s*:\s*solid\s+#(?:e1e1e1|b5c4df)", re.I)

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup", "dd", "del", "div",
    "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "ol", "p",
    "pre", "q", "s", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "u", "ul",
}
_ALLOWED_ATTRS = {
    "*": {"style", "title", "align", "dir", "lang"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign", "width"},
    "th": {"colspan", "rowspan", "valign", "width"},
    "table": {"width", "cellpadding", "cellspacing", "border"},
    "font": {"color", "size", "face"},
    "blockquote": {"type", "cite"},
    "ol": {"start", "type"},
}
_STYLE_PROPERTIES = {
    "color", "background-color", "font-weight", "font-style", "font-size", "font-family", "text-align",
    "text-decoration", "vertical-align", "white-space", "margin", "margin-left", "margin-right", "margin-top",
    "margin-bottom", "padding", "padding-left", "padding-right", "padding-top", "padding-bottom", "border",
    "border-left", "border-top", "border-collapse", "width", "height", "line-height", "list-style-type",
}


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Images only from inline parts or data: URIs; links never javascript:."""
    if tag == "img" and attr == "src":
        low = value.strip().lower()
        return value if low.startswith(("cid:", "data:image/")) else None
    return value


@dataclass(frozen=True)
class Sanitized:
    html: str | None
    truncated: bool = False
    flattened: bool = False


def sanitize(html: str) -> str:
    """HTML safe to show in a portal: no scripts, no remote loads but links."""
    return sanitize_bounded(html).html or ""


def sanitize_bounded(html: str, limit: int | None = None) -> Sanitized:
    """Sanitised HTML at most ``limit`` characters (default: derived from the input's size).

    The input is :func:`flatten`-ed first (html5ever is quadratic in nesting and in attributes).
    Output over the limit is cut and sanitised again, which closes whatever the cut left open."""
    limit = limits.derived_limit(len(html)) if limit is None else limit
    flat, capped = flatten(html, limits.MAX_HTML_DEPTH)
    out = _clean(flat)
    if len(out) <= limit:
        return Sanitized(out, flattened=capped)
    for slack in (8192, limit // 2):
        cut = _clean(out[: max(0, limit - slack)])
        if len(cut) <= limit:
            return Sanitized(cut, truncated=True, flattened=capped)
    return Sanitized(None, truncated=True, flattened=capped)


def _clean(html: str) -> str:
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        clean_content_tags={"script", "style", "title", "head", "template", "noscript"},
        attributes=_ALLOWED_ATTRS,
        attribute_filter=_attribute_filter,
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        filter_style_properties=_STYLE_PROPERTIES,
        link_rel="noopener noreferrer nofollow",
    )


#: A tag. Its body is repeated possessively (``*+``): a backtracking repeat keeps a restore point per
#: character, a hundred times the size of a long tag, and giving back never helps here since no shorter body
#: can be followed by ``>`` (the body takes ``>`` only inside quotes).
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)(?:[^>\"'<]+|\"[^\"]*\"|'[^']*')*+(/?)>")
_ATTRIBUTE = re.compile(r"""[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""")
#: Tags shorter than this cannot hold more than ``MAX_HTML_ATTRIBUTES`` attributes.
_SHORT_TAG = 2 * limits.MAX_HTML_ATTRIBUTES


def flatten(html: str, max_depth: int) -> tuple[str, bool]:
    """``html`` without the start and end tags of elements opened deeper than ``max_depth`` (their
    text stays) and with at most ``MAX_HTML_ATTRIBUTES`` attributes per tag; True when anything was
    dropped. html5ever's cost grows with the open elements times the tags, and with the square of a
    tag's attributes (duplicate check). Linear: the open elements are counted by name, and an end tag
    pops only when its element is open, as the tree builders do."""
    if html.count("<") <= max_depth and len(html) <= _SHORT_TAG:
        return html, False
    stack: list[str] = []
    open_count: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    keep: list[str] = []
    pos = 0
    for tag in _TAG.finditer(html):
        name = tag.group(2).lower()
        replacement: str | None = None
        if not tag.group(1) and tag.end() - tag.start() > _SHORT_TAG:
            replacement = _fewer_attributes(tag)
        if name in _VOID:
            pass
        elif not tag.group(1):
            if len(stack) >= max_depth:
                dropped[name] += 1
                replacement = ""
            else:
                stack.append(name)
                open_count[name] += 1
        elif open_count[name]:
            while (top := stack.pop()) != name:
                open_count[top] -= 1
            open_count[name] -= 1
        elif dropped[name]:
            dropped[name] -= 1
            replacement = ""
        if replacement is not None:
            keep.extend((html[pos : tag.start()], replacement))
            pos = tag.end()
    if pos == 0:
        return html, False
    keep.append(html[pos:])
    return "".join(keep), True


def _fewer_attributes(tag: re.Match[str]) -> str | None:
    """The start tag with its first ``MAX_HTML_ATTRIBUTES`` attributes, or None when it has no more."""
    found = []
    for attribute in _ATTRIBUTE.finditer(tag.string, tag.end(2), tag.end() - 1 - len(tag.group(3))):
        found.append(attribute.group(0))
        if len(found) > limits.MAX_HTML_ATTRIBUTES:
            return f"<{tag.group(2)} {' '.join(found[:-1])}{tag.group(3)}>"
    return None


def cid_references(html: str) -> set[str]:
    """Content-IDs referenced by ``cid:`` URLs in the HTML."""
    return {m.lower() for m in _CID.findall(html or "")}


#: The standard library's start-tag scanner with its attribute repeat made possessive (``)*+``): the same
#: match, since nothing after the repeat can fail, without a restore point per attribute, which made a tag
#: with many attributes take some fifty times its size in memory while it was scanned.
_START_TAG_END = re.compile(html_parser.locatestarttagend_tolerant.pattern.replace("\n     )*\n   )?",
                                                                                 "\n     )*+\n   )?", 1),
                            html_parser.locatestarttagend_tolerant.flags)


class _TextRenderer(HTMLParser):
    def __init__(self, mark_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.mark_quotes = mark_quotes
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.quote_depth = 0
        self.quote_capped = False
        self.marked = False
        self.lists: list[list[int]] = []
        self.stack: list[str] = []
        self.open: Counter[str] = Counter()

    def _newline(self, count: int = 1) -> None:
        self.out.append("\n" * count)

    def _is_quote_start(self, tag: str, attrs: dict[str, str]) -> bool:
        classes = (attrs.get("class") or "").lower()
        ident = (attrs.get("id") or "").lower()
        if tag == "blockquote" and (attrs.get("type") or "").lower() == "cite":
            return True
        if any(c in classes for c in _QUOTE_CLASSES) or any(i in ident for i in _QUOTE_IDS):
            return True
        return tag == "div" and bool(_OUTLOOK_BORDER.search(attrs.get("style") or ""))

    def check_for_whole_start_tag(self, i: int) -> int:
        """``HTMLParser.check_for_whole_start_tag`` as in Python 3.11, scanning with ``_START_TAG_END``; a Python
        that changes either needs this compared again (tests/parsing/test_hostile checks the scanner still
        becomes possessive and reads tags as the standard library's does)."""
        rawdata = self.rawdata
        m = _START_TAG_END.match(rawdata, i)
        if not m:
            raise AssertionError("we should not get here!")
        j = m.end()
        following = rawdata[j : j + 1]
        if following == ">":
            return j + 1
        if following == "/":
            if rawdata.startswith("/>", j):
                return j + 2
            if rawdata.startswith("/", j):
                return -1  # buffer boundary
            return j if j > i else i + 1  # bogus input
        if following == "" or following in "abcdefghijklmnopqrstuvwxyz=/ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            return -1  # end of input in or before an attribute value, or the '/' of a '/>' ending
        return j if j > i else i + 1

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k.lower(): (v or "") for k, v in attrs_list}
        if tag in _SKIP:
            self.skip += 1
            return
        if tag not in _VOID:
            self.stack.append(tag)
            self.open[tag] += 1
        if self.mark_quotes and not self.marked and self._is_quote_start(tag, attrs):
            self.marked = True
            self.out.append(f"\n{QUOTE_MARK}\n")
        render = self._STARTS.get(tag)
        if render is not None:
            render(self, tag, attrs)
        elif tag in _BLOCK:
            self._newline()

    def _open_quote(self, tag: str, attrs: dict[str, str]) -> None:
        self.quote_depth += 1
        self._newline()

    def _open_list(self, tag: str, attrs: dict[str, str]) -> None:
        """A list remembers its next number (0 for bullets)."""
        self.lists.append([1 if tag == "ol" else 0])
        self._newline()

    def _open_item(self, tag: str, attrs: dict[str, str]) -> None:
        self._newline()
        self._list_bullet()

    def _open_pre(self, tag: str, attrs: dict[str, str]) -> None:
        self.pre += 1
        self._newline()

    def _open_cell(self, tag: str, attrs: dict[str, str]) -> None:
        self.out.append("\t")

    def _image_alt(self, tag: str, attrs: dict[str, str]) -> None:
        alt = attrs.get("alt", "").strip()
        if alt:
            self.out.append(alt)

    #: Start tags that write something else than a block's newline, by tag; other tags of _BLOCK start a line.
    _STARTS: ClassVar[dict[str, Callable[[_TextRenderer, str, dict[str, str]], None]]] = {
        "blockquote": _open_quote, "ul": _open_list, "ol": _open_list, "li": _open_item, "pre": _open_pre,
        "td": _open_cell, "th": _open_cell, "img": _image_alt,
    }

    def _list_bullet(self) -> None:
        if self.lists and self.lists[-1][0]:
            self.out.append(f"{self.lists[-1][0]}. ")
            self.lists[-1][0] += 1
        else:
            self.out.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.open[tag]:
            while (top := self.stack.pop()) != tag:
                self.open[top] -= 1
            self.open[tag] -= 1
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
            self._newline()
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._newline()
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._newline()
        elif tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6"):
            self._newline(2)
        elif tag in _BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.pre:
            data = _WHITESPACE.sub(" ", data)
        if self.quote_depth:
            depth = min(self.quote_depth, limits.MAX_QUOTE_DEPTH)
            self.quote_capped = self.quote_capped or depth < self.quote_depth
            self.out.append(data.replace("\n", "\n" + "> " * depth) if self.pre else
                            "\x00Q" + str(depth) + "\x00" + data)
        else:
            self.out.append(data)

    def text(self, limit: int) -> tuple[str, bool]:
        """The rendered text, each quoted line prefixed, cut at ``limit`` characters (True when cut)."""
        raw = "".join(self.out).replace("\xa0", " ")
        lines: list[str] = []
        total, cut = 0, False
        for line in raw.split("\n"):
            depth = 0
            if "\x00Q" in line:
                depth = max(int(d) for d in _DEPTH_TAG.findall(line))
                line = _DEPTH_TAG.sub("", line)
            line = line.strip()
            line = ("> " * depth + line).rstrip() if depth else line
            if not line and lines and not lines[-1]:
                continue  # runs of blank lines become one
            lines.append(line)
            total += len(line) + 1
            if total > limit + 1:
                cut = True
                break
        text = "\n".join(lines).strip("\n")
        return text[:limit], cut or len(text) > limit


@dataclass(frozen=True)
class Rendered:
    text: str
    truncated: bool = False
    quote_depth_capped: bool = False


def to_text(html: str, mark_quotes: bool = False) -> str:
    """Readable text from HTML; with ``mark_quotes`` a QUOTE_MARK line is put
    where a client's quoted history starts."""
    return render(html, mark_quotes).text


def render(html: str, mark_quotes: bool = False, limit: int | None = None) -> Rendered:
    """:func:`to_text` at most ``limit`` characters (default: derived from the HTML's size), saying
    whether it was cut and whether quotes were nested deeper than the ``> `` prefixes show."""
    limit = limits.derived_limit(len(html)) if limit is None else limit
    renderer = _TextRenderer(mark_quotes)
    try:
        renderer.feed(_complete(html))
        renderer.close()
    except (AssertionError, ValueError):
        pass
    text, truncated = renderer.text(limit)
    return Rendered(text, truncated, renderer.quote_capped)


def _complete(html: str) -> str:
    """Every ``<`` after the last ``>`` escaped: no markup can end there, and HTMLParser rescans the
    rest of the input for each such ``<`` (quadratic) before handing it over as text anyway."""
    last = html.rfind(">")
    if html.find("<", last + 1) == -1:
        return html
    return html[: last + 1] + html[last + 1 :].replace("<", "&lt;")
