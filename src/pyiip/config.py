"""Settings from iipsrv's environment variables: same names, same defaults.

Read once at start-up (and again on SIGHUP) into a frozen value, so a bad
value stops the server with a clear message instead of failing requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from pyiip.model import FORMATS, RenderOptions


class ConfigError(ValueError):
    """A setting has a value the server cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    filesystem_prefix: str = ""
    filesystem_suffix: str = ""
    verbosity: int = 1
    logfile: str = "/tmp/iipsrv.log"
    max_image_cache_size: float = 10.0  # MB per process: encoded replies and decoded tiles, one LRU
    max_metadata_cache_size: int = 1000
    jpeg_quality: int = 75
    png_quality: int = 1
    webp_quality: int = 50
    avif_quality: int = 50
    max_cvt: int = 5000
    max_layers: int = 0
    memcached_servers: str = ""
    memcached_timeout: int = 86400
    interpolation: int = 1
    cors: str = ""
    base_url: str = ""
    cache_control: str = "max-age=86400"
    allow_upscaling: bool = True
    uri_map: str = ""
    iiif_version: int = 3
    copyright: str = ""
    preferred_formats: str = ""  # IIIF 3.0 preferredFormats, comma-separated
    iiif_extra_info: str = ""  # JSON members added to every info.json (iipsrv's syntax)
    codec_passthrough: bool = True
    max_request_memory: int = 1024
    max_process_memory: int = 0  # MB of address space per process (RLIMIT_AS), 0 for none
    # Images in object storage (remote.py, block_cache.py).
    remote_url_template: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    aws_region: str = "us-east-1"
    aws_access_key_id: str = field(default="", repr=False)
    aws_secret_access_key: str = field(default="", repr=False)
    aws_session_token: str = field(default="", repr=False)
    block_cache_dir: str = ""
    block_cache_size: float = 1024.0
    remote_block_size: int = 256
    remote_metadata_ttl: float = 60.0
    remote_timeout: float = 10.0
    # Seconds a client or web server may take to send one whole request, to take one whole reply,
    # or to stay idle on a kept connection, before it is dropped (both server modes).
    client_timeout: float = 30.0
    # FITS files served directly (resolve/fits_cache.py): each is built once into a pyramidal cube here.
    fits_cache_dir: str = ""  # default $TMPDIR/pyiip-fits-$UID
    fits_cache_size: float = 4096.0  # MB of cubes kept, least recently used evicted; 0 serves no FITS
    fits_build_timeout: float = 600.0  # seconds a build may run before it is stopped
    fits_build_wait: float = 20.0  # seconds a request waits for a build before a 503 with Retry-After
    log_format: str = "text"  # or "json": one JSON object per log line (log.py)
    metrics_dir: str = ""  # where the workers' counter files are summed (respond/metric_files.py)
    hooks: str = ""  # PYIIP_HOOKS, module:object (pyiip.hooks)

    @property
    def max_output_side(self) -> int | None:
        """MAX_CVT as a bound on each output side, None when unlimited (-1)."""
        return None if self.max_cvt < 0 else self.max_cvt


# name -> (field, parser); parsers raise ValueError on bad text.
def _int(text: str) -> int:
    return int(text.strip())


def _float(text: str) -> float:
    value = float(text.strip())
    if value != value:  # NaN
        raise ValueError("NaN")
    return value


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 0 or 1")


# iipsrv's variables, each with its field and parser; None for one pyiip accepts and has no use for.
_VARIABLES: dict[str, tuple[str, object] | None] = {
    "FILESYSTEM_PREFIX": ("filesystem_prefix", str),
    "FILESYSTEM_SUFFIX": ("filesystem_suffix", str),
    "FILENAME_PATTERN": None,  # iipsrv's multi-file image sequences, which pyiip does not serve
    "VERBOSITY": ("verbosity", _int),
    "LOGFILE": ("logfile", str),
    "MAX_IMAGE_CACHE_SIZE": ("max_image_cache_size", _float),
    "MAX_METADATA_CACHE_SIZE": ("max_metadata_cache_size", _int),
    # The iipsrv man page spells it this way; accept both.
    "MAX_IMAGE_METADATA_CACHE_SIZE": ("max_metadata_cache_size", _int),
    "JPEG_QUALITY": ("jpeg_quality", _int),
    "PNG_QUALITY": ("png_quality", _int),
    "WEBP_QUALITY": ("webp_quality", _int),
    "AVIF_QUALITY": ("avif_quality", _int),
    "MAX_CVT": ("max_cvt", _int),
    "MAX_LAYERS": ("max_layers", _int),
    "MEMCACHED_SERVERS": ("memcached_servers", str),
    "MEMCACHED_TIMEOUT": ("memcached_timeout", _int),
    "INTERPOLATION": ("interpolation", _int),
    "CORS": ("cors", str),
    "BASE_URL": ("base_url", str),
    "CACHE_CONTROL": ("cache_control", str),
    "ALLOW_UPSCALING": ("allow_upscaling", _bool),
    "URI_MAP": ("uri_map", str),
    "IIIF_VERSION": ("iiif_version", _int),
    "COPYRIGHT": ("copyright", str),
    "PREFERRED_FORMATS": ("preferred_formats", str),
    "IIIF_EXTRA_INFO": ("iiif_extra_info", str),
    "CODEC_PASSTHROUGH": ("codec_passthrough", _bool),
    "MAX_REQUEST_MEMORY": ("max_request_memory", _int),
    "MAX_PROCESS_MEMORY": ("max_process_memory", _int),
    "REMOTE_URL_TEMPLATE": ("remote_url_template", str),
    "S3_BUCKET": ("s3_bucket", str),
    "S3_PREFIX": ("s3_prefix", str),
    "S3_ENDPOINT_URL": ("s3_endpoint_url", str),
    "AWS_DEFAULT_REGION": ("aws_region", str),
    "AWS_REGION": ("aws_region", str),  # after AWS_DEFAULT_REGION: it wins, as in the AWS SDKs
    "AWS_ACCESS_KEY_ID": ("aws_access_key_id", str),
    "AWS_SECRET_ACCESS_KEY": ("aws_secret_access_key", str),
    "AWS_SESSION_TOKEN": ("aws_session_token", str),
    "BLOCK_CACHE_DIR": ("block_cache_dir", str),
    "BLOCK_CACHE_SIZE": ("block_cache_size", _float),
    "REMOTE_BLOCK_SIZE": ("remote_block_size", _int),
    "REMOTE_METADATA_TTL": ("remote_metadata_ttl", _float),
    "REMOTE_TIMEOUT": ("remote_timeout", _float),
    "CLIENT_TIMEOUT": ("client_timeout", _float),
    "FITS_CACHE_DIR": ("fits_cache_dir", str),
    "FITS_CACHE_SIZE": ("fits_cache_size", _float),
    "FITS_BUILD_TIMEOUT": ("fits_build_timeout", _float),
    "FITS_BUILD_WAIT": ("fits_build_wait", _float),
    "LOG_FORMAT": ("log_format", str),
    "METRICS_DIR": ("metrics_dir", str),
    "PYIIP_HOOKS": ("hooks", str),
}


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, applying iipsrv's clamping rules."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, variable in _VARIABLES.items():
        if variable is None or name not in environ:
            continue
        attr, parse = variable
        text = environ[name]
        try:
            values[attr] = parse(text)  # type: ignore[operator]
        except ValueError:
            kind = {_int: "an integer", _float: "a number", _bool: "0 or 1"}[parse]  # type: ignore[index]
            raise ConfigError(f"{name} must be {kind}, got {text!r}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    fixes: dict[str, object] = {
        "verbosity": max(0, settings.verbosity),
        "jpeg_quality": _clamp(settings.jpeg_quality, 1, 100),
        "png_quality": _clamp(settings.png_quality, 0, 9),
        "webp_quality": _clamp(settings.webp_quality, -1, 100),
        "avif_quality": _clamp(settings.avif_quality, -1, 100),
        # iipsrv: 0 means the default, -1 unlimited, below -1 becomes 1.
        "max_cvt": 5000 if settings.max_cvt == 0 else (1 if settings.max_cvt < -1 else settings.max_cvt),
    }
    if settings.max_image_cache_size < 0:
        raise ConfigError("MAX_IMAGE_CACHE_SIZE must not be negative")
    if settings.memcached_timeout < 0:
        raise ConfigError("MEMCACHED_TIMEOUT must not be negative")
    if settings.iiif_version not in (2, 3):
        raise ConfigError(f"IIIF_VERSION must be 2 or 3, got {settings.iiif_version}")
    if settings.interpolation not in (0, 1):
        raise ConfigError(f"INTERPOLATION must be 0 or 1, got {settings.interpolation}")
    if not 0 < settings.client_timeout <= 3600:
        raise ConfigError("CLIENT_TIMEOUT must be a number of seconds above 0 and at most 3600")
    if settings.fits_cache_size < 0:
        raise ConfigError("FITS_CACHE_SIZE must be a number of MB, 0 to serve no FITS file")
    if not 0 < settings.fits_build_timeout <= 86400:
        raise ConfigError("FITS_BUILD_TIMEOUT must be a number of seconds above 0 and at most 86400")
    if not 0 <= settings.fits_build_wait <= 3600:
        raise ConfigError("FITS_BUILD_WAIT must be a number of seconds from 0 to 3600")
    if settings.max_request_memory <= 0:
        raise ConfigError("MAX_REQUEST_MEMORY must be a positive number of MB")
    if settings.max_process_memory and settings.max_process_memory < settings.max_request_memory + 512:
        # libvips and glibc reserve address space per thread: below this, ordinary requests would fail.
        raise ConfigError("MAX_PROCESS_MEMORY must be 0 (no limit) or at least MAX_REQUEST_MEMORY + 512 MB")
    for mapping in filter(None, (m.strip() for m in settings.uri_map.split(","))):
        prefix, arrow, protocol = mapping.partition("=>")
        if (
            not arrow
            or prefix.strip().strip("/").lower() != protocol.strip().lower()
            or protocol.strip().lower()
            not in (
                "iiif",
                "deepzoom",
                "zoomify",
            )
        ):
            raise ConfigError(
                f"URI_MAP {mapping!r}: pyiip serves clean URLs at /iiif/, /deepzoom/ and /zoomify/ only "
                "(iiif=>IIIF, deepzoom=>DeepZoom, zoomify=>Zoomify)"
            )
    if settings.cors and any(c in settings.cors for c in "\r\n"):
        raise ConfigError("CORS must be a single header value")
    if settings.log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, got {settings.log_format!r}")
    if settings.metrics_dir:
        private_directory("METRICS_DIR", settings.metrics_dir)
    if settings.hooks:
        from pyiip import hooks  # here, so a bad hook stops every entry point at start-up (it imports this module)

        hooks.load(settings.hooks)
    preferred_formats(settings)
    extra_info(settings)
    return _replace(settings, fixes)


class UnusableDirectory(ConfigError):
    """A private directory that cannot be made or examined (a read-only filesystem...): a cache may turn
    itself off instead of stopping the server, where a directory others could write to must stop it."""


def private_directory(name: str, path: str) -> str:
    """``path`` as an absolute path, made if missing (0700), and refused unless it is a directory (not a
    symbolic link) that this process's user owns and no one else may write.

    Another local user able to write there could plant files the server then
    takes for its own (counters, FITS cubes, blocks of remote images); a link,
    even one of ours, could be pointed elsewhere later by whoever owns its
    parent (a sticky /tmp). METRICS_DIR, FITS_CACHE_DIR and BLOCK_CACHE_DIR all
    pass here: one rule, one wording.
    """
    path = os.path.abspath(path)
    try:
        with contextlib.suppress(FileExistsError):  # there already: the lstat says what it is
            os.makedirs(path, mode=0o700)
        found = os.lstat(path)
    except OSError as exc:
        raise UnusableDirectory(f"{name} {path} cannot be used: {exc.strerror or exc}") from None
    mode, uid = stat.S_IMODE(found.st_mode), os.geteuid()
    if stat.S_ISLNK(found.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(found.st_mode):
        problem = "is not a directory"
    elif found.st_uid != uid:
        problem = f"belongs to uid {found.st_uid}"
    elif mode & 0o022:
        problem = f"is writable by its group or others (mode {mode:04o})"
    else:
        return path
    raise ConfigError(
        f"{name} {path} {problem}: another user could plant files there; it must be a directory (not a "
        f"symbolic link) of this process's user (uid {uid}) that no one else may write (chmod 700)"
    )


def preferred_formats(settings: Settings) -> list[str]:
    """PREFERRED_FORMATS as a list, each one a format the server writes (``jpg``, ``png``, ``webp``...)."""
    names = [name.strip().lower() for name in settings.preferred_formats.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ConfigError(f"PREFERRED_FORMATS: {', '.join(unknown)} not among {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


# Keys that describe the image and what the server does: computed per image, never replaced.
SERVER_KEYS = frozenset(
    (
        "@context", "@id", "id", "type", "protocol", "profile", "width", "height", "sizes", "tiles",
        "maxWidth", "maxHeight", "maxArea", "extraFormats", "extraQualities", "extraFeatures", "preferredFormats",
    )
)  # fmt: skip


def extra_info(settings: Settings) -> dict[str, object]:
    """IIIF_EXTRA_INFO as JSON members, in iipsrv's syntax (``"rights": "...", "service": [...]``).

    A whole object (``{...}``) is read too. iipsrv pastes the text into the
    document unchecked, so a typo breaks every info.json; here it stops the
    server instead, as do keys the server computes itself.
    """
    text = settings.iiif_extra_info.strip()
    if not text:
        return {}
    try:
        members = json.loads(text if text.startswith("{") else "{" + text + "}")
    except ValueError as error:
        raise ConfigError(f'IIIF_EXTRA_INFO must be JSON members such as "rights": "..." ({error})') from None
    if not isinstance(members, dict):
        raise ConfigError("IIIF_EXTRA_INFO must be JSON members or an object")
    taken = sorted(SERVER_KEYS & set(members))
    if taken:
        raise ConfigError(f"IIIF_EXTRA_INFO may not set {', '.join(taken)}: the server writes them")
    return members


def _replace(settings: Settings, changes: dict[str, object]) -> Settings:
    current = {f.name: getattr(settings, f.name) for f in fields(settings)}
    current.update(changes)
    return Settings(**current)


def render_options(settings: Settings) -> RenderOptions:
    """The settings that change rendered bytes, as the renderer and the render cache key take them."""
    return RenderOptions(
        jpeg_quality=settings.jpeg_quality,
        png_quality=settings.png_quality,
        webp_quality=settings.webp_quality,
        avif_quality=settings.avif_quality,
        interpolation=settings.interpolation,
        codec_passthrough=settings.codec_passthrough,
    )
