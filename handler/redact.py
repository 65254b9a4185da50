"""Hiding secrets in text meant for logs, errors and printed settings.

It imports nothing of the sink, so that settings (which shows a bad URL) and the write layer
(which names the server it could not reach) can both use it without one importing the other.
"""

from __future__ import annotations

import re

# Query parameters that carry credentials (InfluxDB 1.x reads ``u``/``p``; tokens by other names).
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:p|password|pass|pwd|token|access_token|api_key|apikey|secret)=)[^&;#]*")


_USER_RE = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=-]+")  # what RFC 3986 allows in a user name


def mask_url(text: str) -> str:
    """The URL with its credentials replaced by ``[hidden]``, for logs and errors.

    Parsing is not trusted to find them: a password holding ``/``, ``?``, ``#`` or ``@`` makes a
    URL parser take part of it for the host or path. So everything between ``://`` (or the
    start) and the *last* ``@`` is user information; only a user name that looks like one (no
    ``/?#`` in it) is kept before the ``:``. Credential query parameters (``p=``, ``token=``, ...)
    are hidden too. Hiding too much is harmless; showing a secret is not.
    """
    at = text.rfind("@")
    if at != -1:
        scheme_end = text.find("://")
        start = scheme_end + 3 if scheme_end != -1 and scheme_end < at else 0
        user, colon, _ = text[start:at].partition(":")
        keep = f"{user}:" if colon and _USER_RE.fullmatch(user) else ""
        text = f"{text[:start]}{keep}[hidden]{text[at:]}"
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1[hidden]", text)
    return text
