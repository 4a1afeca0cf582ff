"""``GET /v1/me``: who the calling key is, for a client that shows who is signed in (the dashboard)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fraudstream.api.deps import CallerDep

router = APIRouter(prefix="/v1/me", tags=["keys"])


class MeOut(BaseModel):
    name: str = Field(description="the key's name, as the audit log records its actions")
    role: str = Field(description="ingest, analyst, admin, or analyst+ingest for a key of FRAUD_API_KEYS")


@router.get("", response_model=MeOut)
async def me(caller: CallerDep) -> MeOut:
    """The calling key's name and role; any valid key may ask."""
    return MeOut(name=caller.name, role=caller.role)
