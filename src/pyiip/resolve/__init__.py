"""resolve: image identifier -> Resolved (a local file under FILESYSTEM_PREFIX, or an object in object storage).

The caller (the Service) chooses the resolver once at start-up. May import read/ (Resolved, the remote byte
source it fills in) and the base modules; never cache/, process/, respond/ or server/.
"""
