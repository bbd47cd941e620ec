"""The web page (gradio Blocks): three tabs calling `handlers.Jobs`.

    demo, jobs = build_page(AppSettings())
    launch(demo, jobs, host="127.0.0.1", port=7860)

Each job shows its stages in a progress bar (gr.Progress), has a Cancel button (the running job stops at its next
stage or chunk of frames, a waiting one leaves the queue) and runs one at a time per process: the queue has one
worker for all three tabs (`concurrency_id`), and `Jobs.lock` guards the models. A bad upload raises gr.Error
with the one line `structvid` prints for it; the page keeps working.

Files: gradio keeps uploads and the copies of videos it sends to the browser in GRADIO_TEMP_DIR, which
`prepare_temp` points into the process's own folder (`Jobs.out_root`, in the system temp folder); gradio deletes
what is older than an hour every hour (`delete_cache`) and the whole folder is removed when the server stops.
"""

import os
from pathlib import Path

from structvid.app import handlers as h

CSS = """
.sv-video video { image-rendering: pixelated; }  /* 64x64 frames enlarged: keep the pixels, as the panels do */
"""
CACHE_SECONDS = 3600  # gradio deletes uploads and served copies older than this, this often

INTRO = """## structvid: structure-aware image-to-video
Zhao et al., *Towards Image-to-Video Translation: A Structure-Aware Approach via Multi-stage GANs*, IJCV 2020.
A still image and a sequence of structures (body poses §4, or a face's 3DMM expressions) become a video: G_M makes
coarse frames (§5, Eq. 7-8), G_R refines them in short clips (§6, Eq. 15). The panels show each stage.
Everything runs on this computer with the bundled models; one job at a time (others wait). Uploads are deleted."""


def prepare_temp(jobs: h.Jobs) -> Path:
    """Point gradio's upload and cache folder into the process's own folder (before any component is made)."""
    folder = jobs.out_root / "gradio"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def _raw(component):
    """Make a gr.Image / gr.Video hand the handler the uploaded file as it is: the handlers read and check it
    (gradio's own Image preprocessing would fail on a file that is not an image before our message could). The
    instance's method is replaced, not the class subclassed: gradio writes a .pyi stub beside every module that
    defines a component class."""
    import types

    from gradio import image_utils

    def preprocess(self, payload):
        if payload is None:
            return None
        if getattr(payload, "url", None) and payload.url.startswith("data:"):  # a webcam snapshot sent inline
            return image_utils.decode_base64_to_file(payload.url, self.GRADIO_CACHE, "png")
        return payload.path

    component.preprocess = types.MethodType(preprocess, component)
    return component


def build_page(settings: h.AppSettings | None = None, jobs: h.Jobs | None = None):
    """(gr.Blocks, Jobs): the page and the jobs it runs."""
    jobs = jobs or h.Jobs(settings)
    prepare_temp(jobs)
    import gradio as gr

    def RawImage(**kwargs):  # noqa: N802 - stands for a component class
        return _raw(gr.Image(**kwargs))

    def RawVideo(**kwargs):  # noqa: N802
        return _raw(gr.Video(**kwargs))

    limits = jobs.settings.limits

    def wrap(fn):
        """A page handler: progress with stage names, the job's owner for Cancel, errors as one line."""

        def run(args, request, progress):
            def say(fraction, text):
                progress(fraction, desc=text)

            try:
                r = fn(*args, progress=say, owner=getattr(request, "session_hash", None))
            except h.JobCancelled:
                return None, None, "Cancelled."
            except Exception as e:  # noqa: BLE001 - every failure is one line on the page; the page goes on
                if not isinstance(e, (h.UserError, OSError, MemoryError)):
                    h.log.exception("job failed")
                raise gr.Error(h.error_line(e), title="Error", print_exception=False) from None
            return str(r.video), str(r.panel), r.summary

        return run

    animate_job, retarget_job, refine_job = wrap(jobs.animate), wrap(jobs.retarget), wrap(jobs.refine)

    def animate(image, source, motion, pose_file, frames, refine, request: gr.Request, progress=gr.Progress()):
        return animate_job((image, source, motion, pose_file, int(frames), refine), request, progress)

    def retarget(portrait, reference, mode, intensity, head_pose, paste_back, refine, request: gr.Request,
                 progress=gr.Progress()):
        return retarget_job((portrait, reference, mode == "relative", float(intensity), head_pose, paste_back,
                             refine), request, progress)

    def refine(video, pose_file, request: gr.Request, progress=gr.Progress()):
        video_out, panel, summary = refine_job((video, pose_file), request, progress)
        return panel, video_out, summary

    def cancel(request: gr.Request):
        jobs.cancel(owner=getattr(request, "session_hash", None))

    def face_example():
        try:
            return tuple(str(p) for p in h.fetch_example_faces())
        except Exception as e:  # noqa: BLE001
            raise gr.Error(h.error_line(e), title="Error", print_exception=False) from None

    queue = dict(concurrency_id="job", concurrency_limit=1)
    with gr.Blocks(title="structvid", analytics_enabled=False,
                   delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Animate a person", id="animate"):
                with gr.Row():
                    with gr.Column():
                        photo = RawImage(label="Photo (I_t)", type="filepath", sources=["upload", "clipboard"],
                                         elem_id="animate-photo", height=256)
                        gr.Examples([[str(h.EXAMPLE_IMAGE)]], inputs=[photo], label="Bundled example (a puppet)",
                                    elem_id="animate-examples")
                        source = gr.Radio(list(h.STRUCTURE_SOURCES), value=h.EXAMPLE_MOTION,
                                          label="Structures (§4): where the poses come from")
                        motion = gr.Dropdown(list(h.motions()), value=h.OWN_MOTION, label="Example motion",
                                             info="Penn Action motions fitted to the example's frame; a forecast "
                                                  "observes its first 10 poses unless a pose file is given")
                        pose_file = gr.File(label="Pose file (.json / .npy / Penn Action .mat, in the photo's pixels;"
                                                  " for a forecast: the observed poses, the last one the photo's)",
                                            elem_id="animate-poses", visible=False)
                        frames = gr.Slider(1, limits.max_frames, value=min(38, limits.max_frames), step=1,
                                           label="Frames to forecast (pose LSTM, Eq. 3-5)", visible=False)
                        use_gr = gr.Checkbox(True, label="Refine with G_R (§6)")
                        with gr.Row():
                            run_a = gr.Button("Animate", variant="primary", elem_id="animate-run")
                            stop_a = gr.Button("Cancel", elem_id="animate-cancel")
                    with gr.Column():
                        video_a = gr.Video(label="Video", elem_id="animate-video", elem_classes="sv-video",
                                           interactive=False, loop=True, autoplay=True, height=320)
                        panel_a = gr.Video(label="Panel: input | condition | coarse | refined | mask",
                                           elem_id="animate-panel", elem_classes="sv-video", interactive=False,
                                           loop=True, autoplay=True)
                        summary_a = gr.Markdown(elem_id="animate-summary")
            with gr.Tab("Retarget a face", id="retarget"):
                with gr.Row():
                    with gr.Column():
                        portrait = RawImage(label="Portrait", type="filepath", elem_id="retarget-portrait",
                                            sources=["upload", "webcam", "clipboard"], height=256)
                        reference = RawVideo(label="Reference video (its expressions and audio)",
                                             sources=["upload"], elem_id="retarget-reference", height=256)
                        local = h.example_faces()
                        if local is not None:
                            gr.Examples([[str(p) for p in local]], inputs=[portrait, reference], label="Example",
                                        elem_id="retarget-examples",
                                        example_labels=["LivePortrait's s42.jpg and d0.mp4 (MIT)"])
                        else:
                            gr.Button("Load the example (downloads LivePortrait's s42.jpg and d0.mp4, MIT)").click(
                                face_example, None, [portrait, reference])
                        mode = gr.Radio(["relative", "absolute"], value="relative", label="Transfer (§4)",
                                        info="relative: the portrait's expression plus the reference's change; "
                                             "absolute: the reference's expression itself")
                        intensity = gr.Slider(0, 2, value=1, step=0.05, label="Intensity")
                        head_pose = gr.Checkbox(False, label="Move the head as the reference does")
                        paste = gr.Checkbox(False, label="Paste the face back into the portrait")
                        use_gr_f = gr.Checkbox(True, label="Refine with G_R (§6)")
                        with gr.Row():
                            run_f = gr.Button("Retarget", variant="primary", elem_id="retarget-run")
                            stop_f = gr.Button("Cancel", elem_id="retarget-cancel")
                    with gr.Column():
                        video_f = gr.Video(label="Video (with the reference's audio)", elem_id="retarget-video",
                                           interactive=False, loop=True, autoplay=True, height=320)
                        panel_f = gr.Video(label="Panel: reference | target | normal maps | output (coarse | refined with G_R)",
                                           elem_id="retarget-panel", elem_classes="sv-video", interactive=False,
                                           loop=True, autoplay=True)
                        summary_f = gr.Markdown(elem_id="retarget-summary")
            with gr.Tab("Refine a video", id="refine"):
                with gr.Row():
                    with gr.Column():
                        video_in = RawVideo(label="Video made by any generator (§7.4)", sources=["upload"],
                                            elem_id="refine-video-in", height=256)
                        poses_in = gr.File(label="Its poses, one per frame (.json / .npy / .mat, video pixels)",
                                           elem_id="refine-poses")
                        gr.Examples([[str(h.EXAMPLE_COARSE), str(h.EXAMPLE_COARSE_POSES)]], inputs=[video_in, poses_in],
                                    label="Example", elem_id="refine-examples",
                                    example_labels=["the bundled G_M's coarse video of the puppet, and its poses"])
                        with gr.Row():
                            run_r = gr.Button("Refine", variant="primary", elem_id="refine-run")
                            stop_r = gr.Button("Cancel", elem_id="refine-cancel")
                    with gr.Column():
                        panel_r = gr.Video(label="coarse | refined | G_R's mask", elem_id="refine-panel",
                                           elem_classes="sv-video", interactive=False, loop=True, autoplay=True)
                        video_r = gr.Video(label="Refined video", elem_id="refine-video", elem_classes="sv-video",
                                           interactive=False, loop=True, height=320)
                        summary_r = gr.Markdown(elem_id="refine-summary")

        def show_inputs(chosen):  # only the inputs the chosen structure source uses
            return (gr.update(visible=chosen != h.POSE_FILE), gr.update(visible=chosen != h.EXAMPLE_MOTION),
                    gr.update(visible=chosen == h.FORECAST))

        source.change(show_inputs, source, [motion, pose_file, frames], queue=False)
        ev_a = run_a.click(animate, [photo, source, motion, pose_file, frames, use_gr],
                           [video_a, panel_a, summary_a], **queue)
        ev_f = run_f.click(retarget, [portrait, reference, mode, intensity, head_pose, paste, use_gr_f],
                           [video_f, panel_f, summary_f], **queue)
        ev_r = run_r.click(refine, [video_in, poses_in], [panel_r, video_r, summary_r], **queue)
        for stop, ev in ((stop_a, ev_a), (stop_f, ev_f), (stop_r, ev_r)):
            stop.click(cancel, None, None, queue=False, cancels=[ev])
    demo.queue(default_concurrency_limit=1)
    return demo, jobs


def launch(demo, jobs: h.Jobs, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False):
    """Serve the page (blocking unless `block=False`); uploads over the size limit are refused by the server."""
    import gradio as gr

    allowed = [str(jobs.out_root), str(h.ASSETS)] + [str(p.parent) for p in h.example_faces() or ()]
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # local fonts: works offline
                              font_mono=["ui-monospace", "monospace"])
    return demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet,
                       max_file_size=int(jobs.settings.limits.max_upload_mb * 2**20), allowed_paths=allowed,
                       show_error=True, ssr_mode=False, footer_links=[], css=CSS, theme=theme, mcp_server=False)
