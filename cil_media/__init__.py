"""Pixels in and out, no ComfyUI and no diffusion math. PIL, PyAV and OpenCV are imported inside
the functions that need them.

    video       the one video reader (video files, animated images, frame folders → uint8 clips)
    clips       clip sets for estimates: an IMAGE batch's clips, one clip per video of a folder
    flow        pixel motion (OpenCV optical flow)
    charts      the chart kit (axes, ticks, lines, legend, non-overlapping labels, PNG, IMAGE tensor)
    probe_plot  the Leakage Probe's plot
    loss_curve  the training loss curve
    grid_gif    an animated GIF of videos side by side
"""
