"""The per-process safety net under the per-request memory budget: RLIMIT_AS.

The primary bound is computed before any pixel is read (render.memory_estimate
against MAX_REQUEST_MEMORY). MAX_PROCESS_MEMORY caps the address space of each
worker as well, so an allocation the estimate missed fails as a MemoryError
(a 503 for that request) instead of pushing the machine into swap or the OOM
killer. Address space is more than resident memory: libvips and glibc reserve
it per thread (about 400 MB above the resident peak in practice), hence the
minimum config.load enforces.
"""

from __future__ import annotations

import resource

from pyiip.config import Settings
from pyiip.log import LOGGER


def apply(settings: Settings) -> None:
    """Set this process's soft RLIMIT_AS from MAX_PROCESS_MEMORY (0 lifts it back to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = settings.max_process_memory * 1024 * 1024 if settings.max_process_memory > 0 else hard
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted == soft:
        return
    try:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (ValueError, OSError) as exc:
        LOGGER.error("MAX_PROCESS_MEMORY: cannot set the address-space limit: %s", exc)
