"""process: plan a request on a pyramid, resample, the display pipeline (contrast, gamma, colormaps) and render.

May import encode/, read/ and the base modules; never cache/, respond/ or server/.
"""
