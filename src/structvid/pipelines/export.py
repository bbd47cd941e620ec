"""`structvid export`: one folder holding every stage of a pipeline, named for its stage, with `pipeline.json`.

    OUT/pipeline.json                  which file holds which stage, structure and crop settings
    OUT/forecaster.safetensors + .json G_M (§5)
    OUT/refiner.safetensors + .json    G_R (§6), optional
    OUT/pose_lstm.safetensors + .json  the pose LSTM (G_C for bodies, §4), optional
    OUT/config.yaml                    the G_M run's resolved config (data settings)

The folder is written beside OUT under a temporary name and renamed when complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from structvid.config import DataConfig, RefineDataConfig, StructureConfig, load_section
from structvid.errors import UserError
from structvid.io.files import atomic_dir, output_errors
from structvid.models.saving import find_checkpoint, find_forecaster, find_module, load_pretrained, run_config_file
from structvid.pipelines.image_to_video import MANIFEST, PipelineManifest
from structvid.structure.factory import structure_section


def export_pipeline(out: str | Path, forecast: str | Path, refine: str | Path | None = None,
                    poses: str | Path | None = None, window_overlap: int = 0, crop_margin: float | None = None) -> Path:
    """Copy the stages of the given runs (or checkpoint / pipeline folders) into one pipeline folder `out`.

    `crop_margin` replaces the training data's margin for inference: a face video is cropped once around all
    its frames' faces, so a single portrait needs a larger margin for its face to appear as large as in training
    (data/faces.py; the face demo measures it)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError("output folder exists and is not empty", out)
    sources: dict[str, tuple[Path, str]] = {}  # stage -> (folder, file stem)
    forecast = Path(forecast)
    if (forecast / MANIFEST).is_file():
        m = PipelineManifest.read(forecast / MANIFEST)
        sources["forecaster"] = (forecast, m.forecaster)
        structure, margin, config = m.structure, m.crop_margin, forecast / "config.yaml"
    else:
        ckpt = find_checkpoint(forecast)
        name = find_forecaster(ckpt)
        sources["forecaster"] = (ckpt, name)
        config = run_config_file(ckpt, forecast)
        data = DataConfig() if config is None else load_section(DataConfig, config, "data")
        cfg = (StructureConfig(num_joints=load_pretrained(ckpt, name).config.motion_channels) if config is None
               else load_section(StructureConfig, config, "structure"))
        structure = structure_section(cfg)
        margin = data.crop_margin
    if refine is not None:
        ckpt = find_checkpoint(refine)
        if find_module(ckpt, ("refiner",)) is None:
            raise UserError("no G_R (refiner.safetensors) in this run", ckpt)
        sources["refiner"] = (ckpt, "refiner")
        rcfg = run_config_file(ckpt, Path(refine))
        if rcfg is not None:  # the G_R run names the G_M it was trained on: say so when it is another
            gm = load_section(RefineDataConfig, rcfg, "data").forecaster
            if gm and Path(gm).exists():
                a = find_checkpoint(gm)
                if a.resolve() != sources["forecaster"][0].resolve():
                    import logging

                    logging.getLogger(__name__).warning("G_R was trained on the coarse frames of %s, not of %s", a,
                                                        sources["forecaster"][0])
    if poses is not None:
        ckpt = find_checkpoint(poses)
        if find_module(ckpt, ("pose_lstm",)) is None:
            raise UserError("no pose LSTM (pose_lstm.safetensors) in this run", ckpt)
        sources["pose_lstm"] = (ckpt, "pose_lstm")
    # load every stage once: a broken file fails here, before anything is written
    models = {stage: load_pretrained(folder, stem) for stage, (folder, stem) in sources.items()}
    if "refiner" in models:
        f, r = models["forecaster"].config, models["refiner"].config
        if (f.resolution, f.motion_channels) != (r.resolution, r.motion_channels):
            raise UserError(f"G_R ({r.resolution}px, {r.motion_channels} motion channels) does not fit G_M "
                            f"({f.resolution}px, {f.motion_channels})", sources["refiner"][0])
    manifest = PipelineManifest(forecaster="forecaster", refiner="refiner" if "refiner" in sources else None,
                                pose_lstm="pose_lstm" if "pose_lstm" in sources else None,
                                structure=dict(structure), crop_margin=margin if crop_margin is None else crop_margin,
                                window_overlap=window_overlap)
    with output_errors(out), atomic_dir(out) as tmp:
        for stage, (folder, stem) in sources.items():
            for suffix in (".safetensors", ".json"):
                shutil.copyfile(folder / f"{stem}{suffix}", tmp / f"{stage}{suffix}")
        if config is not None and Path(config).is_file():
            shutil.copyfile(config, tmp / "config.yaml")
        manifest.write(tmp / MANIFEST)
    return out
