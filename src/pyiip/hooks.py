"""The authorization and lookup hook (``PYIIP_HOOKS=module:object``), and the values its authors use.

The object (a module, a class instance, any object) may have any of:

- ``authorize(request: HookRequest) -> Allow | Deny | MaxSize``: asked for
  every image a request opens, before any cache can answer;
- ``resolve(identifier: str) -> str``: the name to open instead (a path under
  FILESYSTEM_PREFIX, or an object key under S3_PREFIX: still confined there);
- ``extra_info(image: HookImage) -> dict``: members added to the image's info.json;
- ``probe_service(image: HookImage) -> dict | None``: an IIIF Authorization
  Flow 2.0 probe service (``"type": "AuthProbeService2"``, with its access
  services) added to the info.json ``service`` list.

It is imported once at start-up: a hook that cannot be imported, or has none
of these, stops the server with a clear message. Only this module is
imported by hook authors (``from pyiip.hooks import ALLOW, Deny, MaxSize``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyiip.config import ConfigError
from pyiip.errors import HTTPError

METHODS = ("authorize", "resolve", "extra_info", "probe_service")


@dataclass(frozen=True, slots=True)
class HookRequest:
    """What ``authorize`` sees of a request: the image, the protocol, the credentials, the client."""

    identifier: str  # as the request names it (before ``resolve``)
    kind: str  # iiif_info, iiif_image, iip_tile, iip_cvt, iip_metadata, iip_profile, deepzoom, zoomify...
    authorization: str = ""  # the Authorization header, "" when none
    cookie: str = ""  # the Cookie header, "" when none
    client: str = ""  # the client's address (REMOTE_ADDR)


@dataclass(frozen=True, slots=True)
class HookImage:
    """What ``extra_info`` and ``probe_service`` see of an image."""

    identifier: str  # as the request named it
    name: str  # what it was opened under (``resolve``'s answer, else the identifier)
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Allow:
    """Full access."""


ALLOW = Allow()


@dataclass(frozen=True, slots=True)
class Deny:
    """No access: the request fails with ``status`` (401, 403 or 404) and ``message``."""

    status: int = 403
    message: str = "access denied"
    headers: tuple[tuple[str, str], ...] = ()  # e.g. (("WWW-Authenticate", 'Bearer realm="images"'),)

    def __post_init__(self) -> None:
        if self.status not in (401, 403, 404):
            raise ValueError(f"Deny status must be 401, 403 or 404, not {self.status}")


@dataclass(frozen=True, slots=True)
class MaxSize:
    """The image at most ``pixels`` on its longer side: no reply shows it at a larger scale.

    info.json then declares that size (maxWidth, maxHeight, the sizes and
    tile scale factors within it), IIIF ``max`` means it, a CVT is shrunk to
    it, and any other request for more detail (a deeper tile, a larger
    region) is refused.
    """

    pixels: int

    def __post_init__(self) -> None:
        if self.pixels < 1:
            raise ValueError("MaxSize pixels must be at least 1")

    def scale(self, width: int, height: int) -> float:
        """The largest output scale this allows for an image of that size."""
        return min(1.0, self.pixels / max(width, height, 1))


Decision = Allow | Deny | MaxSize


class Denied(HTTPError):
    """A Deny decision as an error reply."""

    def __init__(self, decision: Deny) -> None:
        super().__init__(decision.message, decision.headers)
        self.status = decision.status


@dataclass(frozen=True, slots=True)
class Hooks:
    """The hook object's methods; None for those it lacks."""

    spec: str
    authorize: Callable[[HookRequest], Any] | None
    resolve: Callable[[str], Any] | None
    extra_info: Callable[[HookImage], Any] | None
    probe_service: Callable[[HookImage], Any] | None

    def decide(self, request: HookRequest) -> Decision:
        """``authorize``'s decision (ALLOW without one); anything else it returns is a hook bug (500)."""
        if self.authorize is None:
            return ALLOW
        decision = self.authorize(request)
        if not isinstance(decision, Allow | Deny | MaxSize):
            raise TypeError(f"{self.spec}: authorize returned {decision!r}, not Allow, Deny or MaxSize")
        if isinstance(decision, Deny):
            raise Denied(decision)
        return decision

    def name(self, identifier: str) -> str:
        """``resolve``'s name for ``identifier`` (itself without one)."""
        if self.resolve is None:
            return identifier
        name = self.resolve(identifier)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.spec}: resolve returned {name!r}, not a non-empty string")
        return name


def load(spec: str) -> Hooks:
    """Import ``module:object`` (``module`` alone: the module is the object); ConfigError when it cannot serve."""
    module_name, _, attribute = spec.strip().partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is a start-up error, named
        raise ConfigError(f"PYIIP_HOOKS {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in filter(None, attribute.split(".")):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"PYIIP_HOOKS {spec!r}: {module_name!r} has no {attribute!r}") from None
    methods = {name: getattr(found, name, None) for name in METHODS}
    if not any(callable(m) for m in methods.values()):
        raise ConfigError(f"PYIIP_HOOKS {spec!r} has none of the hook methods ({', '.join(METHODS)})")
    return Hooks(spec, **{name: m if callable(m) else None for name, m in methods.items()})
