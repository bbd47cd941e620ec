"""`structvid app`: a local web page for the three jobs -- animate a person, retarget a face, refine a video.

`handlers` holds what the page does as plain functions (testable without a browser), `page` the gradio Blocks,
`cli` the `app_command` click command. Needs the optional extra `structvid[app]` (gradio).
"""
