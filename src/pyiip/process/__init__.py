"""process: bind a request to a pyramid (bind), resample, the display pipeline (contrast, gamma, colormaps), render.

May import encode/, read/ and the base modules; never cache/, respond/ or server/.
"""
