"""One way to build a structure renderer: from its config section (`structure:` in every experiment YAML, saved
with each checkpoint, and in a pipeline folder's pipeline.json)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from structvid.config import StructureConfig, from_dict
from structvid.structure.base import Structure


def build_structure(cfg: StructureConfig | dict[str, Any] | None = None, source: str | None = None) -> Structure:
    """`joints` -> JointHeatmaps; `face_normals` -> FaceNormals on the configured 3DMM (loaded lazily)."""
    if cfg is None:
        cfg = StructureConfig()
    elif isinstance(cfg, dict):
        cfg = from_dict(StructureConfig, cfg, source, "structure.")
    if cfg.kind == "joints":
        from structvid.structure.heatmaps import JointHeatmaps

        return JointHeatmaps(num_joints=cfg.num_joints, sigma=cfg.sigma)
    from structvid.structure.faces.morphable import default_model
    from structvid.structure.faces.normals import FaceNormals

    return FaceNormals(default_model(cfg.face_model), space=cfg.normal_space, shading=cfg.shading,
                       face_model=cfg.face_model)


# the StructureConfig fields each kind uses (the others keep their defaults and are left out of pipeline.json)
KIND_FIELDS = {"joints": ("kind", "num_joints", "sigma"),
               "face_normals": ("kind", "face_model", "normal_space", "shading")}


def structure_section(cfg: StructureConfig) -> dict[str, Any]:
    """The `structure` section written to pipeline.json: only the fields `cfg.kind` uses."""
    d = asdict(cfg)
    return {k: d[k] for k in KIND_FIELDS[cfg.kind]}
