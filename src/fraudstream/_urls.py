"""URL options of our own, carried in a backend URL's query and removed before its client sees it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def split_prefix(url: str) -> tuple[str, str | None]:
    """``url`` without its ``?prefix=`` option, and that option (``None`` when absent).

    The prefix namespaces a backend's keys, streams or topics, so several deployments (or test runs)
    can share one Redis or Kafka; the client libraries would reject the unknown option.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix
