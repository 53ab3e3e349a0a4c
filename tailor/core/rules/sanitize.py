"""Variant HTML sanitizing: an allowlist (nh3, i.e. Rust's ammonia), applied when a ruleset is compiled.

Variant HTML comes from manifests that many people can edit, and it is injected into shop pages, so it
is cleaned once, in the operator, before it is published: scripts, event handlers, `style`, iframes,
forms and `javascript:` URLs never reach Redis. The content API also serves it under a strict CSP;
the two defences are independent on purpose.
"""

from __future__ import annotations

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
    "*": {"class", "id", "lang", "title", "dir", "aria-label", "aria-hidden", "role"},
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
