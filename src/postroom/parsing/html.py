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

import re
from html.parser import HTMLParser

import nh3

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
_BLANK_RUN = re.compile(r"\n{3,}")
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


def sanitize(html: str) -> str:
    """HTML safe to show in a portal: no scripts, no remote loads but links."""
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


def cid_references(html: str) -> set[str]:
    """Content-IDs referenced by ``cid:`` URLs in the HTML."""
    return {m.lower() for m in _CID.findall(html or "")}


class _TextRenderer(HTMLParser):
    def __init__(self, mark_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.mark_quotes = mark_quotes
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.quote_depth = 0
        self.marked = False
        self.lists: list[list[int]] = []
        self.stack: list[str] = []

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

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k.lower(): (v or "") for k, v in attrs_list}
        if tag in _SKIP:
            self.skip += 1
            return
        if tag not in _VOID:
            self.stack.append(tag)
        if self.mark_quotes and not self.marked and self._is_quote_start(tag, attrs):
            self.marked = True
            self.out.append(f"\n{QUOTE_MARK}\n")
        if tag == "blockquote":
            self.quote_depth += 1
            self._newline()
        elif tag in ("ul", "ol"):
            self.lists.append([1 if tag == "ol" else 0])
            self._newline()
        elif tag == "li":
            self._newline()
            self._list_bullet()
        elif tag == "pre":
            self.pre += 1
            self._newline()
        elif tag in ("td", "th"):
            self.out.append("\t")
        elif tag == "img":
            alt = attrs.get("alt", "").strip()
            if alt:
                self.out.append(alt)
        elif tag in _BLOCK:
            self._newline()

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
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass
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
            self.out.append(data.replace("\n", "\n" + "> " * self.quote_depth) if self.pre else
                            "\x00Q" + str(self.quote_depth) + "\x00" + data)
        else:
            self.out.append(data)

    def text(self) -> str:
        raw = "".join(self.out).replace("\xa0", " ")
        lines = []
        for line in raw.split("\n"):
            depth = 0
            if "\x00Q" in line:
                depth = max(int(d) for d in _DEPTH_TAG.findall(line))
                line = _DEPTH_TAG.sub("", line)
            line = line.strip()
            lines.append(("> " * depth + line).rstrip() if depth else line)
        text = "\n".join(lines)
        return _BLANK_RUN.sub("\n\n", text).strip("\n")


def to_text(html: str, mark_quotes: bool = False) -> str:
    """Readable text from HTML; with ``mark_quotes`` a QUOTE_MARK line is put
    where a client's quoted history starts."""
    renderer = _TextRenderer(mark_quotes)
    try:
        renderer.feed(html)
        renderer.close()
    except (AssertionError, ValueError):
        pass
    return renderer.text()
