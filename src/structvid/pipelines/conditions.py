"""Condition sources: G_C of §4, where the structure of every generated frame comes from.

A source gives the input image's own structure (I_t's M_t) and the structures of the frames to generate, in
the input image's pixels, as parameters of the pipeline's `Structure` (joints for bodies, `FaceParams`
vectors for faces). The pipeline frames, renders and generates from them (`ImageToVideoPipeline.stream`).

* `GivenStructure`: structures the user supplies (a pose file; a face parameter sequence);
* `PoseForecast`: 10 observed poses forecast by the pose LSTM (§4, Eq. 3-5);
* `ExpressionTransfer`: a reference video's expressions on the target face (§4, Eq. 1-2; structure/faces/transfer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from structvid.models.pose_lstm import PoseLSTM, forecast_poses, pose_lstm_predictor
from structvid.structure.faces.transfer import TransferSettings, transfer


@dataclass
class Conditions:
    image_params: np.ndarray | None  # the input image's structure (None: the first frame's)
    params: np.ndarray  # (T, ...) one structure per generated frame


class ConditionSource(Protocol):
    def conditions(self, image: np.ndarray) -> Conditions:
        """The structures for `image` (H, W, 3) uint8, in its pixels."""


@dataclass
class GivenStructure:
    params: np.ndarray
    image_params: np.ndarray | None = None

    def conditions(self, image: np.ndarray) -> Conditions:
        return Conditions(self.image_params, self.params)


@dataclass
class PoseForecast:
    """§4 for bodies: the LSTM observes T_obs poses (the last is the image's) and forecasts `num_frames`."""

    model: PoseLSTM
    observed: np.ndarray  # (T_obs, J, 3) in the image's pixels
    num_frames: int
    device: Any = "cpu"

    def poses(self) -> np.ndarray:
        """(num_frames, J, 3) forecast poses in the observed poses' pixels (visibility 1)."""
        predictor = pose_lstm_predictor(self.model, torch.device(self.device))
        return forecast_poses(predictor, self.observed, self.num_frames)

    def conditions(self, image: np.ndarray) -> Conditions:
        return Conditions(np.asarray(self.observed[-1], np.float32), self.poses())


@dataclass
class ExpressionTransfer:
    """§4 for faces: the reference video's expressions on the target's fitted face (structure/faces/transfer.py);
    both were fitted beforehand (structure/faces/fitting.py)."""

    target: np.ndarray  # (P,) the input image's fitted face, in its pixels
    reference: np.ndarray  # (T, P) the reference video's fitted faces
    n_id: int
    n_exp: int
    settings: TransferSettings = field(default_factory=TransferSettings)

    def conditions(self, image: np.ndarray) -> Conditions:
        return Conditions(np.asarray(self.target, np.float32),
                          transfer(self.target, self.reference, self.n_id, self.n_exp, self.settings))
