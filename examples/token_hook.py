"""An example PYIIP_HOOKS object: a bearer token sees everything, the public a size-limited view.

    PYTHONPATH=/path/to/pyiip PYIIP_HOOKS=examples.token_hook:HOOK \\
    TOKEN_HOOK_TOKENS=s3cret,other TOKEN_HOOK_PUBLIC_SIZE=512 TOKEN_HOOK_PRIVATE=private/ pyiip serve

- ``Authorization: Bearer <token>`` with one of TOKEN_HOOK_TOKENS: full access;
- otherwise an identifier under TOKEN_HOOK_PRIVATE, and the index page
  (which names every image), are refused (401, with a WWW-Authenticate
  challenge); any other image is served at most
  TOKEN_HOOK_PUBLIC_SIZE pixels on its longer side (info.json says so);
- with TOKEN_HOOK_AUTH_URL (your login service), info.json names an IIIF
  Authorization Flow 2.0 probe service (``<url>/probe/<identifier>``, its
  access, token and logout services beneath it), which Mirador and other
  Auth 2.0 clients follow to get a token. Those services are yours to run:
  pyiip only serves images.

A real hook would check tokens against an identity provider or a signed
JWT (constant-time comparison, expiry); this one keeps a fixed list.
"""

from __future__ import annotations

import hmac
import os
from urllib.parse import quote

from pyiip.hooks import ALLOW, Decision, Deny, HookImage, HookRequest, MaxSize


class TokenHook:
    """The hook: its settings read once, from the environment, at start-up."""

    def __init__(self, tokens: list[str], public_size: int, private: str, auth_url: str) -> None:
        self.tokens = [token.encode() for token in tokens if token]
        self.public = MaxSize(public_size)
        self.private = private
        self.auth_url = auth_url.rstrip("/")

    @classmethod
    def from_environ(cls) -> TokenHook:
        return cls(
            os.environ.get("TOKEN_HOOK_TOKENS", "").split(","),
            int(os.environ.get("TOKEN_HOOK_PUBLIC_SIZE", "512")),
            os.environ.get("TOKEN_HOOK_PRIVATE", "private/"),
            os.environ.get("TOKEN_HOOK_AUTH_URL", ""),
        )

    def _valid(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        given = token.strip().encode()
        return scheme.lower() == "bearer" and any(hmac.compare_digest(given, t) for t in self.tokens)

    def authorize(self, request: HookRequest) -> Decision:
        if self._valid(request.authorization):
            return ALLOW
        if request.kind == "index" or (self.private and request.identifier.startswith(self.private)):
            return Deny(401, "a token is needed", (("WWW-Authenticate", 'Bearer realm="images"'),))
        return self.public

    def extra_info(self, image: HookImage) -> dict[str, object]:
        return {"rights": "http://creativecommons.org/licenses/by/4.0/"}

    def probe_service(self, image: HookImage) -> dict[str, object] | None:
        if not self.auth_url:
            return None
        base = self.auth_url
        return {
            "id": f"{base}/probe/{quote(image.identifier, safe='')}",
            "type": "AuthProbeService2",
            "service": [
                {
                    "id": f"{base}/login",
                    "type": "AuthAccessService2",
                    "profile": "active",
                    "label": {"en": ["Log in to see the full image"]},
                    "service": [
                        {"id": f"{base}/token", "type": "AuthAccessTokenService2"},
                        {"id": f"{base}/logout", "type": "AuthLogoutService2", "label": {"en": ["Log out"]}},
                    ],
                }
            ],
        }


HOOK = TokenHook.from_environ()
