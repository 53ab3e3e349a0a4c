"""Variant content made safe to inject into shop pages, when a ruleset is compiled.

Variant HTML comes from manifests that many people can edit, and it is injected into shop pages, so it
is cleaned once, in the operator, before it is published: an allowlist (nh3, i.e. Rust's ammonia), so
scripts, event handlers, `style`, iframes, forms and `javascript:` URLs never reach Redis. Image
variants are data, not HTML: their `src` and `href` are checked instead (`url_problem`), and a bad one
fails the variant. The content API also serves under a strict CSP, and the SDK scrubs what it renders;
the defences are independent on purpose.

`id` and `name` are dropped, not prefixed: an element's id (and a form's or image's name) becomes a
property of `window` or `document` in the shop's page, so `<img id="config">` would replace what the
shop's own scripts read as `window.config` (DOM clobbering). A prefix would only move the clobbering to
other names and break the one thing ids are for in a fragment, links to `#anchor`; variants are styled
by class, and the same variant may be on a page twice, where ids would repeat.
"""

from __future__ import annotations

import re
from typing import Final

import nh3

TAGS: Final = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "del", "div", "em", "figcaption",
        "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "mark", "ol", "p",
        "picture", "pre", "s", "section", "small", "source", "span", "strong", "sub", "sup", "table",
        "tbody", "td", "tfoot", "th", "thead", "time", "tr", "u", "ul",
    }
)  # fmt: skip
ATTRIBUTES: Final = {
    "*": {"class", "lang", "title", "dir", "aria-label", "aria-hidden", "role"},  # no id: see above
    "a": {"href", "hreflang", "target"},
    "img": {"src", "srcset", "sizes", "alt", "width", "height", "loading", "decoding"},
    "source": {"srcset", "sizes", "media", "type"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "time": {"datetime"},
}
URL_SCHEMES: Final = frozenset({"https", "http", "mailto", "tel"})
# Tags whose whole content goes, not just the tag: their text is code, not copy.
DROPPED_WITH_CONTENT: Final = frozenset({"script", "style", "template", "noscript", "iframe", "object"})


# Built once: constructing the sanitizer costs more than cleaning a typical variant.
_CLEANER = nh3.Cleaner(
    tags=set(TAGS),
    clean_content_tags=set(DROPPED_WITH_CONTENT),
    attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
    url_schemes=set(URL_SCHEMES),
    link_rel="noopener noreferrer",
    strip_comments=True,
)


def clean_html(html: str) -> str:
    """`html` with everything outside the allowlist removed; links get rel="noopener noreferrer"."""
    result: str = _CLEANER.clean(html)
    return result


MAX_URL_LENGTH: Final = 2048  # as an event's page.url
MAX_DATA_URL_LENGTH: Final = 65536  # as an HTML body
# Raster images only: an SVG can carry script (inert in <img>, not when opened on its own).
DATA_IMAGE_TYPES: Final = ("png", "jpeg", "gif", "webp", "avif")
_DATA_IMAGE = re.compile(rf"data:image/(?:{'|'.join(DATA_IMAGE_TYPES)});base64,[A-Za-z0-9+/]+={{0,2}}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Browsers drop tabs and newlines inside URLs ("java\tscript:" runs) and read "\" as "/" ("/\host"
# is another host): such a URL is refused rather than guessed at.
_UNREAD = re.compile(r"[\x00-\x20\x7f\\]")


def url_problem(value: object, *, image: bool) -> str | None:
    """None if `value` is safe as an image variant's `src` (`image`) or its link's `href`, else what is
    wrong, to follow "content.data.src " or "content.data.href ". Both: an https URL or a relative
    reference (a path, `?query`, `#fragment`) of at most MAX_URL_LENGTH characters; a `src` may also be
    http (as before) or a base64 `data:` raster image; `//host` is refused (write the scheme)."""
    wanted = "an https URL or a relative path (like /sale)"
    if not isinstance(value, str) or not value:
        return f"must be {wanted}, a non-empty string"
    shown = repr(value if len(value) <= 60 else value[:57] + "...")
    if image and value[:5].lower() == "data:":
        if len(value) > MAX_DATA_URL_LENGTH:
            return (
                f"is a data: URL of {len(value):,} characters, over {MAX_DATA_URL_LENGTH:,}: host the image"
            )
        if _DATA_IMAGE.fullmatch(value):
            return None
        types = ", ".join(f"image/{kind}" for kind in DATA_IMAGE_TYPES)
        return f"may be a data: URL only as a base64 {types}, not {shown}"
    if len(value) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters, not {len(value):,}"
    if _UNREAD.search(value):
        return (
            f"must not hold spaces, control characters or backslashes (browsers drop or reread them): {shown}"
        )
    scheme = _SCHEME.match(value)
    if scheme is not None:
        allowed = ("https", "http") if image else ("https",)
        if scheme.group(1).lower() not in allowed or not value[scheme.end() :].startswith("//"):
            return f"must be {wanted}, not {shown}"
    elif value.startswith("//"):
        return f"must be {wanted}; {shown} is another host with the page's scheme: write https://"
    return None
