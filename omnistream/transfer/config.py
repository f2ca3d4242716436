"""Settings of OmniTransfer's online side, in the worker's config file under ``transfer:``
(pydantic only, so that reading a config does not import torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TransferConfig(BaseModel):
    """How a base model becomes an entity's model (epochs per phase: the paper's Table 4)."""

    model_config = ConfigDict(extra="forbid")
    beta: float | None = Field(None, gt=0, description="DiffScore (relative to the base model's own cluster) at or "
                                                      "below which the whole base model is fine-tuned; unset = the "
                                                      "base models' own: the 75th percentile of their clusters' "
                                                      "members' DiffScores (no labels)")
    strategy: Literal["adaptive", "full", "partial"] = Field(
        "adaptive", description="adaptive (by beta), or always full / partial")
    full_epochs: int | None = Field(None, ge=1, description="fine-tuning epochs of a full transfer; unset = a third "
                                                           "of the detector's own epochs")
    head_epochs: int | None = Field(None, ge=1, description="partial transfer: epochs with the shared layers "
                                                           "frozen; unset = a third of the detector's own epochs")
    all_epochs: int | None = Field(None, ge=1, description="partial transfer: epochs of fine-tuning everything "
                                                          "after; unset = a sixth of the detector's own epochs")

    def epochs(self, detector_epochs: int) -> tuple[int, int, int]:
        """(full, head, all) epochs: a transfer never trains longer than the detector from scratch."""
        third, sixth = max(1, round(detector_epochs / 3)), max(1, round(detector_epochs / 6))
        return self.full_epochs or third, self.head_epochs or third, self.all_epochs or sixth


class TransferSettings(TransferConfig):
    """`omnistream transfer`: where the clusters are, how much of an entity's data it waits for."""

    registry: Path = Field(Path("clusters"), description="cluster registry with base models "
                                                         "(cluster, fit --per-cluster)")
    points: int = Field(1440, ge=100, description="points of the entity's own data a transfer trains and "
                                                 "calibrates on (one day at one point a minute)")
    cold_start: bool = Field(True, description="serve the nearest cluster's base model as soon as the entity "
                                               "has one window of data, until its own model is ready")
    retry_every: float = Field(10.0, gt=0, description="seconds between looks at a request still waiting for data")
    scan_timeout: float = Field(5.0, gt=0, description="seconds to wait for the broker while reading an entity's data")
