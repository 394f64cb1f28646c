"""cache: the byte-budgeted LRU, decoded tiles, rendered images (and their memcached tier), kept replies, open images.

May import process/, encode/, resolve/, read/ and the base modules; never respond/ or server/.
"""
