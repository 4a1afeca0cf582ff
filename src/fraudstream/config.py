"""Settings: one object, read from ``FRAUD_*`` environment variables, passed in explicitly."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob fraudstream reads from the environment, with defaults that need no servers.

    Build one at the edge of the program (the CLI, a test) and pass it down; nothing reads the
    environment at import time.
    """

    model_config = SettingsConfigDict(env_prefix="FRAUD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("fraudstream-data"), description="where generated data and models go")
    datasets_dir: Path = Field(Path("../shared/datasets"), description="where the public sample datasets are")
    model_path: Path | None = Field(None, description="model bundle to serve; default: data_dir/model.fsb")
    mlflow_tracking_uri: str | None = Field(None, description="log training runs to MLflow when set")
    threads: int = Field(2, ge=1, description="threads for model training")
    seed: int = 7

    @property
    def bundle_path(self) -> Path:
        return self.model_path or self.data_dir / "model.fsb"
