"""``/v1/keys``: the stored API keys, for admins — what ``fraudstream keys`` does, over HTTP.

A new key's token is in the answer to its ``POST`` and nowhere else: the database keeps its SHA-256.
A revocation takes effect at once on the server that answered it and within FRAUD_KEY_CACHE_SECONDS
on the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from fraudstream.api.deps import StoreDep, get_keyring
from fraudstream.storage.keys import NAME_PATTERN, KeyRefused, Role, StoredKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyIn(BaseModel):
    """A key to create."""

    name: str = Field(pattern=NAME_PATTERN, description="1-64 letters, digits or ._@-; recorded as who acted")
    role: Role = Field(description="ingest, analyst or admin")


class KeyOut(BaseModel):
    """A stored key: never its token."""

    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @classmethod
    def of(cls, key: StoredKey) -> KeyOut:
        return cls(**{name: getattr(key, name) for name in cls.model_fields})


class CreatedKeyOut(KeyOut):
    """The key just created, with its token: shown this once."""

    token: str = Field(description="send as 'X-API-Key: <token>' or 'Authorization: Bearer <token>'")


class KeysOut(BaseModel):
    keys: list[KeyOut]


NameParam = Annotated[str, Path(pattern=NAME_PATTERN, description="the key's name")]


@router.get("", response_model=KeysOut)
async def list_keys(
    store: StoreDep, active: Annotated[bool, Query(description="leave out the revoked keys")] = False
) -> KeysOut:
    """The stored keys by name, with their role and times; never their tokens, which are not kept."""
    keys = await run_in_threadpool(store.keys.list, revoked=not active)
    return KeysOut(keys=[KeyOut.of(key) for key in keys])


@router.post(
    "",
    response_model=CreatedKeyOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "a key of that name exists (revoked keys keep their names)"}},
)
async def create_key(body: KeyIn, store: StoreDep) -> CreatedKeyOut:
    """Create a key with a role; the answer holds its token, which is shown this once."""
    try:
        key, token = await run_in_threadpool(store.keys.create, body.name, body.role)
    except KeyRefused as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return CreatedKeyOut(**KeyOut.of(key).model_dump(), token=token)


@router.post("/{name}/revoke", response_model=KeyOut, responses={404: {"description": "no key of that name"}})
async def revoke_key(name: NameParam, store: StoreDep, request: Request) -> KeyOut:
    """Revoke a key: refused at once by this server, within FRAUD_KEY_CACHE_SECONDS by the others.
    Revoking a revoked key changes nothing; its name stays taken."""
    try:
        key = await run_in_threadpool(store.keys.revoke, name)
    except KeyRefused as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    get_keyring(request).forget()
    return KeyOut.of(key)
