"""The one way a string from a model file reaches generated C or C++.

Every byte of a `.tflite` is untrusted: a tensor, op, subgraph, signature or metadata name can
hold anything, including the `*/` that ends a comment, a newline that ends a `//` comment, a
backslash or the trigraph `??/` that continues one, or a quote that ends a string literal.
Code generators (`tfedge.microcontroller.codegen`, `tfedge.converters.firmware`,
`op_resolver`) put model strings into their output only through these functions:

    c_text.comment(tensor.name)           # text for inside /* ... */ or after //
    c_text.string_literal(tensor.name)    # a complete "..." C string literal

Both keep a whitelist of printable ASCII and spell every other byte of the UTF-8 text as
`\\xNN`, so the result holds no `*`, `/`, `\\` followed by a newline, `?`, quote or control
character of its own, and the same name always gives the same text. Generated identifiers
never come from model strings (the generators number their arrays and structs); the names a
user chooses are checked by `tfedge.converters.c_array.check_identifier`.
"""

import re

# Printable ASCII that means nothing special inside a comment or a string literal: no '*' or
# '/' (comment delimiters), no '\\' (escapes, line continuation), no '?' (trigraphs: '??/' is a
# backslash under -std=c99), no quotes.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   " _-+=.,:;!@#$%^&()[]{}<>|~")
COMMENT_LIMIT = 80
_ESCAPED = re.compile(r"\\x[0-9a-f]{2}")


def _escape(text):
    if isinstance(text, bytes):
        data = text
    elif isinstance(text, str):
        data = text.encode("utf-8", errors="surrogatepass")
    else:
        raise TypeError(f"`text` must be str or bytes. Received: {type(text).__name__}")
    return "".join(chr(b) if chr(b) in _PLAIN else f"\\x{b:02x}" for b in data)


def comment(text, limit=COMMENT_LIMIT):
    """`text` made safe for the inside of a `/* */` or `//` comment: one line of at most
    `limit` characters (longer text is cut and ends in "..."), every character outside the
    whitelist written as `\\xNN` (its UTF-8 bytes)."""
    if not isinstance(limit, int) or limit < 8:
        raise ValueError(f"`limit` must be an integer >= 8. Received: limit={limit!r}")
    escaped = _escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[:limit - 3]
    # never end inside an escape: drop a partial "\\xN" at the end
    tail = cut.rfind("\\")
    if tail >= 0 and not _ESCAPED.fullmatch(cut[tail:]):
        cut = cut[:tail]
    return cut + "..."


def string_literal(text):
    """A complete C/C++ string literal ("...") holding the UTF-8 bytes of `text`.

    Escapes are written as `\\xNN` followed, where the next character is a hex digit, by
    `" "` (string concatenation), since a hex escape would swallow it."""
    escaped = _escape(text)
    out = []
    for piece in re.split(r"(\\x[0-9a-f]{2})", escaped):
        if not piece:
            continue
        if out and out[-1].startswith("\\x") and piece[0] in "0123456789abcdefABCDEF":
            out.append('" "')
        out.append(piece)
    return '"' + "".join(out) + '"'
