"""Where the archive lives: a filesystem picked by URL, and errors that say what to do.

``s3://bucket/prefix`` is any S3-compatible store, through :class:`pyarrow.fs.S3FileSystem`: options go in
the query (``endpoint_override=host:port``, ``scheme=http``, ``region=...``, ``allow_bucket_creation=true``)
and credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or the AWS default chain),
never from the URL, which is printed. A path, or ``file://`` and a path, is a local folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

#: Query parameters that would put a secret into a URL that is printed and logged.
SECRET_PARAMETERS = ("access_key", "secret_key", "session_token")


class ArchiveError(ValueError):
    """The archive cannot be used as asked: the message says why and what to do."""


@dataclass(frozen=True)
class Location:
    """An archive's filesystem and the root folder (``bucket/prefix`` on S3) inside it."""

    fs: FileSystem
    root: str
    url: str
    local: bool

    def path(self, *parts: str) -> str:
        """The path of ``parts`` under the root, ``/``-separated on every filesystem."""
        return "/".join([self.root.rstrip("/"), *parts])


def is_archive_url(text: str) -> bool:
    """Whether ``text`` names an archive by URL (``s3://``, ``file://``) rather than a plain path."""
    return urlsplit(text).scheme in ("s3", "file")


def archive_url(data: Path | str) -> str | None:
    """The archive a ``--data`` value names, as a URL, or ``None`` if it names something else.

    ``s3://`` and ``file://`` URLs name archives; a command-line option parsed as a path has turned
    ``s3://bucket`` into ``s3:/bucket``, which is put back. A local folder is an archive when it holds
    one of the archive's dataset folders (``decisions``, ``transactions``, ``labels``).
    """
    text = str(data)
    for scheme in ("s3", "file"):
        if text.startswith(f"{scheme}:/") and not text.startswith(f"{scheme}://"):
            text = f"{scheme}://" + text.removeprefix(f"{scheme}:/")
    if is_archive_url(text):
        return text
    folder = Path(text)
    if folder.is_dir() and any((folder / name).is_dir() for name in ("decisions", "transactions", "labels")):
        return text
    return None


def check_url(url: str) -> str:
    """``url`` (stripped) if it can name an archive; :class:`ArchiveError` naming the problem if not."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ArchiveError(f"archive URL {url!r} names no bucket: use s3://BUCKET/PREFIX")
        secret = sorted(set(parse_qs(parts.query)) & set(SECRET_PARAMETERS))
        if secret:
            raise ArchiveError(
                f"archive URL: {secret[0]} must not be in the URL (it is printed and logged): "
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
            )
        return url
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a path (C:\\... on Windows)
        if not (parts.path if parts.scheme == "file" else url):
            raise ArchiveError("archive URL is empty: give s3://BUCKET/PREFIX or a folder")
        return url
    raise ArchiveError(
        f"archive URL {url!r}: expected s3://BUCKET/PREFIX (any S3-compatible store) or a local folder, "
        f"not {parts.scheme}://"
    )


def open_location(url: str, *, create: bool = False) -> Location:
    """The archive at ``url``; with ``create`` a local folder is made if missing (a bucket never is,
    unless the URL says ``allow_bucket_creation=true``)."""
    from pyarrow import fs

    url = check_url(url)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        try:
            filesystem, root = fs.FileSystem.from_uri(url)
        except (OSError, ValueError, TypeError) as exc:  # unknown option, bad value
            raise ArchiveError(f"archive URL {url!r}: {exc}") from None
        bucket = root.split("/", 1)[0]
        creatable = parse_qs(parts.query).get("allow_bucket_creation", [""])[0].lower() == "true"
        try:
            if filesystem.get_file_info(bucket).type == fs.FileType.NotFound:
                if not _credentials():  # an unsigned request is refused, which S3 answers as not found
                    raise ArchiveError(
                        f"cannot see the bucket {bucket!r} at {url}: no credentials are set (set "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or the bucket does not exist"
                    )
                if not (create and creatable):
                    raise ArchiveError(_no_bucket(url, "not found"))
                filesystem.create_dir(bucket)
        except OSError as exc:
            raise translate(exc, url) from None
        return Location(filesystem, root.rstrip("/"), url, local=False)
    path = Path(parts.path if parts.scheme == "file" else url).expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return Location(fs.LocalFileSystem(), path.as_posix(), url, local=True)


def _credentials() -> bool:
    """Whether credentials are in the environment (the AWS chain may still find others: a profile, a
    role; this only chooses what an error suggests)."""
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    return all(os.environ.get(k) for k in keys) or bool(os.environ.get("AWS_PROFILE"))


def _no_bucket(url: str, detail: str) -> str:
    bucket = urlsplit(url).netloc
    return (
        f"the bucket {bucket!r} does not exist at {url}: create it (or add allow_bucket_creation=true to "
        f"the URL to let `fraudstream archive run` create it) — {detail}"
    )


def translate(exc: OSError, url: str) -> ArchiveError:
    """An :class:`ArchiveError` for an error of the store, saying what to check."""
    text = str(exc)
    upper = text.upper()
    if "NO_SUCH_BUCKET" in upper or ("BUCKET" in upper and "NOT FOUND" in upper):
        return ArchiveError(_no_bucket(url, text))
    if any(word in upper for word in ("ACCESS_DENIED", "SIGNATURE", "INVALID_ACCESS_KEY", "FORBIDDEN")):
        hint = (
            "no credentials are set: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            if not _credentials()
            else "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's permissions"
        )
        return ArchiveError(f"the store refused access to {url}: {hint} — {text}")
    if "COULDN'T CONNECT" in upper or "NETWORK_CONNECTION" in upper or "CONNECTION REFUSED" in upper:
        return ArchiveError(
            f"cannot reach the store of {url}: is it running, and is endpoint_override (and scheme=http "
            f"for a plain-HTTP server) right? — {text}"
        )
    return ArchiveError(f"archive {url}: {text}")


__all__ = [
    "ArchiveError",
    "Location",
    "archive_url",
    "check_url",
    "is_archive_url",
    "open_location",
    "translate",
]
