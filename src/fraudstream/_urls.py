"""URL options of our own, carried in a backend URL's query and removed before its client sees it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def url_option(url: str, name: str) -> str | None:
    """The value of ``?name=`` in ``url``'s query (the first, if repeated), or ``None`` when absent."""
    return next((v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == name), None)


def split_prefix(url: str) -> tuple[str, str | None]:
    """``url`` without its ``?prefix=`` option, and that option (``None`` when absent).

    The prefix namespaces a backend's keys, streams or topics, so several deployments (or test runs)
    can share one Redis or Kafka; the client libraries would reject the unknown option.
    """
    parts = urlsplit(url)
    rest = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), url_option(url, "prefix")


def without_password(url: str) -> str:
    """``url`` as messages show it: a password in it becomes ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))
