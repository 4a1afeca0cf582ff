"""``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``: which registered model version to serve."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fraudstream.models.bundle import BundleError

SCHEME = "models:/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{0,255}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")


class RegistryError(BundleError):
    """The model registry could not be reached, or does not hold what was asked for; the message says
    what to do. A :class:`BundleError`, so every command and the API report it as a model problem."""


class RegistryUnavailableError(RegistryError):
    """No registry to talk to: MLflow not installed, not configured, or not answering."""


class RegistryConflictError(RegistryError):
    """The registry's state does not allow the change: already champion, no challenger, nothing to roll
    back to."""


class ModelUriError(RegistryError, ValueError):
    """A ``models:/`` URI that names no model version; the message names the setting and the reason."""


def is_registry_uri(text: str) -> bool:
    """Whether ``text`` names a model in the registry (``models:/...``) rather than a file."""
    return text.strip().startswith(SCHEME)


@dataclass(frozen=True)
class ModelUri:
    """A registered model and either an alias (``champion``) or a version number."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str, field: str = "FRAUD_MODEL_URI") -> ModelUri:
        """``models:/fraudstream@champion`` or ``models:/fraudstream/3``; :class:`ModelUriError` naming
        ``field`` for anything else."""
        raw = text.strip()
        hint = "expected models:/NAME@ALIAS (models:/fraudstream@champion) or models:/NAME/VERSION"
        if not raw.startswith(SCHEME):
            raise ModelUriError(f"{field}: {hint}, got {text!r}")
        rest = raw[len(SCHEME) :]
        if "@" in rest:
            name, _, alias = rest.partition("@")
            if not _ALIAS.match(alias):
                raise ModelUriError(f"{field}: the alias {alias!r} is not a valid alias; {hint}")
            uri = cls(name=name, alias=alias)
        else:
            name, slash, version = rest.rpartition("/")
            if not slash or not version.isdigit() or int(version) < 1:
                raise ModelUriError(f"{field}: {hint}, got {text!r}")
            uri = cls(name=name, version=str(int(version)))
        if not _NAME.match(uri.name):
            raise ModelUriError(f"{field}: {uri.name!r} is not a registered model name; {hint}")
        return uri

    def __str__(self) -> str:
        return f"{SCHEME}{self.name}@{self.alias}" if self.alias else f"{SCHEME}{self.name}/{self.version}"
