"""S3 credentials: the settings' keys, or botocore's credential chain, refreshed before they expire.

pyiip signs its requests itself (sigv4.py, several times faster than botocore's signer); botocore only
finds the keys: the environment, the shared config and credentials files (``AWS_PROFILE``), the SSO
cache, a web identity token (Kubernetes IRSA: ``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``), ECS
container credentials and EC2 instance metadata (IMDSv2), in botocore's order. botocore is imported
only here, when S3 is configured without keys in the settings: a local-file server never loads it.

Finding and refreshing credentials can mean network round trips (STS, the ECS endpoint, IMDS), so
they run in a daemon thread and a request waits for them at most until its object-store deadline
(``REMOTE_TIMEOUT``): a slow, lying or failing credential provider gives a 503 and a log line, never
a hung worker. The chain is resolved in the background from start-up on; once found, temporary
credentials are refreshed from botocore's advisory window (15 minutes before expiry) on, in the
background while the old ones are valid for ``USABLE_FOR`` seconds more. botocore's freshness check
reads the local time zone (~50 us): fresh credentials are asked of it once per ``FRESH_FOR`` seconds,
and a signature's look-up is one clock read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pyiip.config import ConfigError, Settings
from pyiip.errors import Unavailable
from pyiip.read.sigv4 import Credentials

LOGGER = logging.getLogger("pyiip")

USABLE_FOR = 60.0  # seconds of validity left under which a request waits for new credentials
RETRY_PAUSE = 5.0  # seconds between background refreshes that left the old credentials in place
FRESH_FOR = 30.0  # seconds fresh credentials are used without asking botocore, if they stay out of its window


class CredentialsUnavailable(Unavailable):
    """No usable S3 credentials now (provider failing, slow or lying): retry later."""

    def __init__(self) -> None:
        super().__init__("image store credentials unavailable", (("Retry-After", "5"),))


class Fixed:
    """Credentials given in the settings (AWS_ACCESS_KEY_ID...): used as they are, never refreshed."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def current(self, deadline: float) -> Credentials | None:
        return self._credentials


class _Task:
    """One call of ``work`` in a daemon thread: a request may stop waiting for it, the process may exit."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.pid = os.getpid()  # a thread does not survive fork: a child starts its own
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._work = work
        threading.Thread(target=self._run, name="pyiip-credentials", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._work()
        except Exception as exc:  # whatever botocore or a provider raises: logged, and a 503 if a request waits
            LOGGER.error("S3 credentials: %s: %s", type(exc).__name__, exc)
            self.error = exc
        finally:
            self.done.set()


class Chain:
    """botocore's credential chain for one process: resolved, then refreshed, off the request path."""

    def __init__(self, timeout: float) -> None:
        from botocore.config import Config

        self._session = _session()
        # STS (web identity, assumed roles) under the object-store timeout, not botocore's 60 s and retries.
        retries = {"total_max_attempts": 1}
        self._session.set_default_client_config(Config(connect_timeout=timeout, read_timeout=timeout, retries=retries))
        self._resolved = False
        self._refreshable: Any = None  # botocore RefreshableCredentials, None for fixed ones or none at all
        self._frozen: Any = None
        self._current: Credentials | None = None
        self._next_try = 0.0
        self._fresh_until = 0.0  # time.monotonic() until which _current needs no look at botocore's
        self._task: _Task | None = _Task(self._resolve)

    def current(self, deadline: float) -> Credentials | None:
        """The credentials to sign with now (None: unsigned), waiting for a provider until ``deadline`` at most."""
        if time.monotonic() < self._fresh_until:
            return self._current
        refreshable = self._refreshable
        if refreshable is not None and not refreshable.refresh_needed():
            current = self._freeze(refreshable.get_frozen_credentials())
            if not refreshable.refresh_needed(getattr(refreshable, "_advisory_refresh_timeout", 900) + FRESH_FOR):
                self._fresh_until = time.monotonic() + FRESH_FOR  # botocore's check costs ~50 us: not per signature
            return current
        if self._resolved and refreshable is None:
            return self._current
        return self._refresh(deadline)

    def _refresh(self, deadline: float) -> Credentials | None:
        """Not resolved yet, or due for refresh: wait for the provider, unless the current ones last."""
        task = self._task
        if task is None or task.pid != os.getpid() or (task.done.is_set() and (self._resolved or task.error)):
            # None running: a finished refresh left its credentials in botocore's, a failed one is retried.
            if self._usable() and time.monotonic() < self._next_try:
                return self._current
            self._next_try = time.monotonic() + RETRY_PAUSE
            task = self._task = _Task(self._refreshed if self._resolved else self._resolve)
        if self._usable() and not task.done.is_set():
            return self._current  # still valid for a while: the new ones are fetched in the background
        if not task.done.wait(max(0.0, deadline - time.monotonic())):
            LOGGER.error("S3 credentials: the credential provider did not answer within REMOTE_TIMEOUT")
            raise CredentialsUnavailable
        if task.error is not None:  # logged by the task
            if self._usable():
                return self._current
            raise CredentialsUnavailable
        if not self._resolved:
            self._install(task.result[0])
        return self._freeze(task.result[1])

    def _resolve(self) -> tuple[Any, Any]:
        """(botocore's credentials, frozen), both None when the chain finds none. Runs in the task's thread."""
        found = self._session.get_credentials()
        return found, None if found is None else found.get_frozen_credentials()

    def _refreshed(self) -> tuple[Any, Any]:
        """As _resolve, for the credentials found: refreshed by botocore when due. Runs in the task's thread."""
        return self._refreshable, self._refreshable.get_frozen_credentials()

    def _install(self, found: Any) -> None:
        """The chain's answer, kept for the process's life (found is None: unsigned requests)."""
        self._resolved = True
        if found is None:
            LOGGER.warning("S3 credentials: none found by botocore's credential chain: requests are unsigned")
            self._fresh_until = float("inf")
            return
        self._refreshable = found if hasattr(found, "refresh_needed") else None
        if self._refreshable is None:
            self._fresh_until = float("inf")  # fixed keys (a profile's, the environment's): never refreshed
        LOGGER.info("S3 credentials from %s", getattr(found, "method", "botocore"))

    def _usable(self) -> bool:
        """Whether the current credentials are valid for USABLE_FOR seconds more."""
        refreshable = self._refreshable
        return self._current is not None and refreshable is not None and not refreshable.refresh_needed(USABLE_FOR)

    def _freeze(self, frozen: Any) -> Credentials | None:
        """pyiip's Credentials for botocore's frozen ones, made once per set."""
        if frozen is not self._frozen:
            self._frozen = frozen
            self._current = (
                None if frozen is None else Credentials(frozen.access_key, frozen.secret_key, frozen.token or "")
            )
        return self._current


def _session() -> Any:
    """A botocore session whose AWS_PROFILE exists and whose config files parse, or ConfigError."""
    import botocore.session
    from botocore.exceptions import BotoCoreError

    session = botocore.session.Session()
    try:
        profiles = session.available_profiles  # parses the config and credentials files
        profile = session.profile
    except BotoCoreError as exc:  # an unreadable config file
        raise ConfigError(f"AWS configuration: {exc}") from None
    if profile is not None and profile not in profiles:
        raise ConfigError(f"AWS_PROFILE names profile {profile!r}, found in no AWS config or credentials file")
    return session


def _uses_chain(settings: Settings) -> bool:
    return bool(settings.s3_bucket) and not (settings.aws_access_key_id and settings.aws_secret_access_key)


def check_settings(settings: Settings) -> None:
    """The start-up check, before any worker starts: ConfigError for a missing AWS_PROFILE or a broken
    config file, when botocore's chain will be asked. botocore, then imported here, is shared by the
    forked workers."""
    if _uses_chain(settings):
        with contextlib.suppress(ImportError):  # each worker says it, in the log
            _session()


def credential_source(settings: Settings) -> Fixed | Chain | None:
    """Where S3 credentials come from: the settings' keys, botocore's chain, or nowhere (unsigned requests)."""
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        return Fixed(
            Credentials(settings.aws_access_key_id, settings.aws_secret_access_key, settings.aws_session_token)
        )
    try:
        return Chain(settings.remote_timeout)
    except ImportError:
        LOGGER.warning(
            "S3 credentials: botocore is not installed (pip install 'pyiip[s3]'): without AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, requests are unsigned"
        )
        return None
