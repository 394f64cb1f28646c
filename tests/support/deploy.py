"""Helpers of the deployment tests: the shipped conf/ and deploy/ files made runnable on free ports.

Each web server runs the very file users install, with only its marked
paths and ports replaced, so a broken recipe fails here.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.servers import VENV_BIN, get

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
DEPLOY = REPO / "deploy"
BASE_URL = "https://images.example.org"
METADATA = (
    "&obj=IIP,1.0&obj=max-size&obj=tile-size&obj=resolution-number&obj=bits-per-channel"
    "&obj=min-max-sample-values&obj=subject"
)

IIP_REQUESTS = [
    f"/fcgi-bin/iipsrv.fcgi?FIF=float.tif{METADATA}",
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,3",
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=2,1",
    "/fcgi-bin/iipsrv.fcgi?FIF=float.tif&MINMAX=1:90,200&GAM=0.4545&CMP=jet&CTW=1,0,0;0,1,0;0,0,1&JTL=2,1",
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&RGN=0.1,0.2,0.3,0.4&WID=300&CVT=jpeg",
    "/fcgi-bin/iipsrv.fcgi?FIF=nested/deeper/float_notags.tif&WID=200&CVT=png",
    "/fcgi-bin/iipsrv.fcgi?FIF=missing.tif&JTL=0,0",
]
IIIF_REQUESTS = [
    "/iiif/3/rgb.tif/info.json",
    "/iiif/2/rgb.tif/info.json",
    "/iiif/3/rgb.tif/100,100,300,200/150,/0/default.jpg",
    "/iiif/2/rgb_deflate.tif/full/200,/90/default.png",
    "/iiif/3/nested%2Fdeeper%2Ffloat_notags.tif/info.json",  # %2F must reach pyiip encoded
]
HAVE_IIIF = importlib.util.find_spec("pyiip.respond.iiif") is not None
# The IIIF entries are checked once the IIIF module exists (it is written alongside).
REQUESTS = IIP_REQUESTS + (IIIF_REQUESTS if HAVE_IIIF else [])
# Every other endpoint of the HTTP mode, which each shipped configuration routes to pyiip.
ENDPOINT_REQUESTS = [
    "/",
    "/?page=1",
    "/index.html",
    "/viewer.html?image=rgb.tif",
    "/fcgi-bin/iipsrv.fcgi",  # iipsrv's banner
    "/static/viewer.js",
    "/static/vendor/leaflet/leaflet.js",
    "/static/vendor/leaflet/images/layers.png",
    "/static/missing.js",
    "/deepzoom/rgb.tif.dzi",
    "/deepzoom/rgb.tif_files/8/0_0.jpg",
    "/deepzoom/rgb_deflate.tif_files/10/1_1.png",
    "/zoomify/rgb.tif/ImageProperties.xml",
    "/zoomify/rgb.tif/TileGroup0/0-0-0.jpg",
    "/api?FIF=rgb.tif&INFO",  # VisiOmatic v3
    "/api?FIF=rgb.tif&JTL=0,0",
]
# Answers that hold per-process values (pid, counts, uptime): the status and type must match, and a
# reply other than 200 (/livez and /readyz before pyiip has them) must be pyiip's own, byte for byte.
PROBES = ["/health", "/livez", "/readyz", "/metrics"]
COMPARED_HEADERS = ("Content-Type", "Last-Modified", "Cache-Control", "ETag", "Access-Control-Allow-Origin")


def settings_env(root: Path, log: Path) -> dict[str, str]:
    """iipsrv variables every server of a comparison gets (BASE_URL: IIIF ids must not depend on ports),
    and PYTHONPATH: the processes a web server starts run this tree's code, as the reference does."""
    return {
        "PYTHONPATH": str(REPO / "src"),
        "FILESYSTEM_PREFIX": f"{root}/",
        "JPEG_QUALITY": "90",
        "BASE_URL": BASE_URL,
        "CORS": "*",
        "VERBOSITY": "2",
        "LOGFILE": str(log),
    }


def same_bytes(
    base: str, reference: str, requests: list[str] = REQUESTS, headers: dict[str, str] | None = None
) -> None:
    """Every request of the set answers the same status, body and headers through both servers."""
    for path in requests:
        status, got, body = get(f"{base}{path}", headers)
        ref_status, ref_headers, ref_body = get(f"{reference}{path}", headers)
        assert status == ref_status, (path, status, body[:200])
        assert body == ref_body, path
        for name in COMPARED_HEADERS:
            assert got[name] == ref_headers[name], (path, name, got[name], ref_headers[name])


def every_endpoint(base: str, reference: str) -> None:
    """The pages, static files, Deep Zoom, Zoomify and the probes answer through the web server as in the
    HTTP mode (static files gzipped too): the configuration routes every endpoint to pyiip."""
    same_bytes(base, reference, ENDPOINT_REQUESTS)
    same_bytes(base, reference, ["/static/viewer.js"], {"Accept-Encoding": "gzip"})
    for path in PROBES:
        status, headers, body = get(f"{base}{path}")
        ref_status, ref_headers, ref_body = get(f"{reference}{path}")
        assert (status, headers["Content-Type"]) == (ref_status, ref_headers["Content-Type"]), (path, body[:200])
        assert status == 200 or body == ref_body, (path, status, body[:200])


def status_from(base: str, path: str, source: str) -> int:
    """The status of a GET sent from another loopback address (``127.0.0.2``): a client that is not local."""
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


# --- processes ------------------------------------------------------------------------------------


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(root: int, marker: bytes) -> list[int]:
    """The FastCGI processes under ``root``: live descendants whose command line holds ``marker``,
    less any supervisor among them (a ``--workers`` parent of others)."""
    found = _marked(root, marker)
    parents = {_parent(pid) for pid in found}
    return [pid for pid in found if pid not in parents]


def _marked(root: int, marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == root:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker not in cmdline or state == "Z":
            continue
        pid, hops = int(entry.name), 0
        while pid not in (None, 0, 1) and hops < 10:
            pid, hops = _parent(pid), hops + 1
            if pid == root:
                found.append(int(entry.name))
                break
    return sorted(found)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that does not reap (orphans under some inits)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def warm_up(base: str, count: Callable[[], int], want: int, timeout: float = 20.0) -> None:
    """Concurrent requests until ``want`` FastCGI processes run (mod_fcgid starts them on demand)."""
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(want * 2) as pool:
        while count() < want and time.monotonic() < deadline:
            list(pool.map(lambda i: get(f"{base}/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID={50 + i}&CVT=jpeg"), range(8)))
    assert count() >= want, f"only {count()} FastCGI processes"


def load_and_kill(
    base: str,
    processes: Callable[[], list[int]],
    want: int = 2,
    total: int = 160,
    clients: int = 4,
    in_flight: int = 1,
    on_demand: bool = False,
) -> list[int]:
    """A load of distinct (uncached) requests; SIGKILL one FastCGI process a quarter of the way through.

    The load must complete with no more failures than the requests the
    killed process had in flight (``in_flight``: 1 where processes share a
    socket or the web server gives each one request at a time), and the web
    server (or supervisor) must bring the process count back to ``want`` with
    a new process: at once, or (``on_demand``, mod_fcgid) once concurrent
    requests ask for it, since one process may carry the rest of the load alone.
    Returns the failed statuses.
    """
    assert wait_for(lambda: len(processes()) >= want), processes()
    victim = processes()[0]
    paths = [f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID={64 + i}&CVT=jpeg" for i in range(total)]
    done: list[int] = []

    def one(path: str) -> int:
        status = get(f"{base}{path}", timeout=60)[0]
        done.append(status)
        return status

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(one, path) for path in paths]
        assert wait_for(lambda: len(done) >= total // 4, timeout=60)
        os.kill(victim, signal.SIGKILL)
        statuses = [future.result() for future in futures]
    failed = [s for s in statuses if s != 200]
    assert len(failed) <= in_flight, f"{len(failed)} failures, more than the requests in flight: {failed}"
    if on_demand:
        assert wait_for(lambda: victim not in processes()), processes()
        warm_up(base, lambda: len(processes()), want)
    assert wait_for(lambda: victim not in processes() and len(processes()) >= want), processes()
    for path in paths[:4]:  # the replacement serves
        assert get(f"{base}{path}")[0] == 200
    return failed


@contextlib.contextmanager
def process(command: list[str], wait: Callable[[], object], **kw) -> Iterator[subprocess.Popen]:
    """Run a server until the block ends; stopped with SIGTERM by PID, SIGKILL after 10 s."""
    proc = subprocess.Popen(command, **kw)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}")
            try:
                wait()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- configurations -------------------------------------------------------------------------------


def replace_lines(text: str, replacements: dict[str, str]) -> str:
    """Replace whole lines starting with each key (``var.pyiip_fcgi``, ``Define PYIIP_DIR``)."""
    for start, line in replacements.items():
        text, count = re.subn(rf"^{re.escape(start)}\b.*$", line.replace("\\", "\\\\"), text, flags=re.M)
        assert count == 1, f"{start} not found once"
    return text


def drop_lines(text: str, patterns: list[str]) -> str:
    """Remove the lines matching any pattern (settings the test gives its own values)."""
    return "".join(line for line in text.splitlines(True) if not any(re.match(p, line) for p in patterns))


def replace_text(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"{old!r} not in the shipped file"
        text = text.replace(old, new)
    return text


def lighttpd_conf(directory: Path, port: int, env: dict[str, str], procs: int = 2) -> Path:
    """conf/lighttpd/pyiip.conf under a minimal lighttpd.conf with Debian's URL normalisation."""
    snippet = replace_lines(
        (CONF / "lighttpd" / "pyiip.conf").read_text(),
        {
            "var.pyiip_fcgi": f'var.pyiip_fcgi = "{VENV_BIN}/pyiip.fcgi"',
            "var.pyiip_images": f'var.pyiip_images = "{env["FILESYSTEM_PREFIX"]}"',
            "var.pyiip_socket": f'var.pyiip_socket = "{directory}/pyiip.sock"',
            "var.pyiip_logfile": f'var.pyiip_logfile = "{env["LOGFILE"]}"',
            "var.pyiip_procs": f"var.pyiip_procs = {procs}",
        },
    )
    extra = {k: v for k, v in env.items() if k not in ("FILESYSTEM_PREFIX", "LOGFILE")}
    snippet = drop_lines(snippet, [rf'^\s*#?\s*"{k}"\s*=>' for k in extra])  # lighttpd refuses duplicate keys
    lines = "".join(f'      "{k}" => "{v}",\n' for k, v in extra.items())
    snippet = snippet.replace('    "bin-environment" => (\n', f'    "bin-environment" => (\n{lines}', 1)
    (directory / "pyiip.conf").write_text(snippet)
    config = directory / "lighttpd.conf"
    config.write_text(
        f"""server.modules = ( "mod_indexfile", "mod_access", "mod_alias" )
server.document-root = "{directory}"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{directory}/lighttpd.pid"
server.errorlog = "{directory}/error.log"
server.breakagelog = "{directory}/breakage.log"
server.http-parseopts = (
  "header-strict" => "enable", "host-strict" => "enable", "host-normalize" => "enable",
  "url-normalize-unreserved" => "enable", "url-normalize-required" => "enable",
  "url-ctrls-reject" => "enable", "url-path-2f-decode" => "enable", "url-path-dotseg-remove" => "enable",
)
include "{directory}/pyiip.conf"
"""
    )
    return config


def nginx_conf(directory: Path, port: int, socket: Path) -> Path:
    """conf/nginx/pyiip.conf as the only site of a foreground nginx."""
    site = replace_text(
        (CONF / "nginx" / "pyiip.conf").read_text(),
        {
            "server unix:/run/pyiip/pyiip.sock;": f"server unix:{socket};",
            "    listen 80;\n    listen [::]:80;\n": f"    listen 127.0.0.1:{port};\n",
            "root /var/www/html;": f"root {directory};",
        },
    )
    (directory / "pyiip-site.conf").write_text(site)
    shutil.copy("/etc/nginx/fastcgi_params", directory / "fastcgi_params")
    (directory / "logs").mkdir(exist_ok=True)
    config = directory / "nginx.conf"
    temp = directory / "temp"
    temp.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(temp, "www-data", "www-data")  # the workers buffer large replies there
    config.write_text(
        f"""worker_processes 2;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/logs/access.log;
    client_body_temp_path {temp}/body;
    fastcgi_temp_path {temp}/fastcgi;
    proxy_temp_path {temp}/proxy;
    include {directory}/pyiip-site.conf;
}}
"""
    )
    return config


def nginx_command(directory: Path, config: Path) -> list[str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    global_directives = f"daemon off; pid {directory}/nginx.pid; error_log {directory}/logs/error.log info;"
    if os.geteuid() == 0:
        global_directives += " user www-data www-data;"  # as Debian runs it: the socket's group must let it in
    return [nginx, "-p", str(directory), "-c", str(config), "-g", global_directives]


# --- Apache ---------------------------------------------------------------------------------------


def _runs_as(user: str | None, command: list[str]) -> bool:
    try:
        result = subprocess.run(
            command, user=user, capture_output=True, cwd="/", timeout=60, env={"PATH": "/usr/bin:/bin"}
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def apache_user() -> str | None:
    """The User of a root-started Apache (it will not run scripts as root); None when not root."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("www-data", "apache", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.fail("no unprivileged user (www-data, nobody) to run Apache's children as")


def apache_script(directory: Path, user: str | None) -> Path:
    """The FastCGI script mod_fcgid runs as ``user``: the venv's entry point when that user can run it.

    A venv whose interpreter sits where the user cannot go (a pyenv under
    /root, mode 0700) is used through a wrapper instead: the same Python
    version from a system path, given the venv's site-packages with
    site.addsitedir. Nothing outside the test's own directory changes mode.
    """
    entry = VENV_BIN / "pyiip.fcgi"
    if _runs_as(user, [str(VENV_BIN / "python"), "-c", "import pyiip.server.fcgi"]):
        return entry
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    site_packages = Path(sys.prefix) / "lib" / f"python{version}" / "site-packages"
    check = f"import sys; assert sys.version_info[:2] == {tuple(sys.version_info[:2])}"
    for python in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}", "/usr/bin/python3"):
        if not os.path.exists(python) or not _runs_as(user, [python, "-c", check]):
            continue
        wrapper = directory / "fcgi-bin" / "pyiip.fcgi"
        wrapper.parent.mkdir(exist_ok=True)
        wrapper.write_text(
            f"#!{python}\n"
            "# The venv's interpreter is unreadable by the Apache user: same Python version, venv packages.\n"
            f"import site\nsite.addsitedir({str(site_packages)!r})\n"
            "from pyiip.server.fcgi import main\nmain()\n"
        )
        wrapper.chmod(0o755)
        wrapper.parent.chmod(0o755)
        if _runs_as(user, [str(wrapper), "--help"]):
            return wrapper
    pytest.fail(
        f"{user} can run neither {VENV_BIN}/python nor a system Python {version} with the venv's packages: "
        "make the venv readable by that user (e.g. a venv under /opt)"
    )


def world_readable_copy(source: Path) -> tuple[Path, Callable[[], None]]:
    """A copy of the image root (mtimes kept) in a fresh directory any user can read, and its remover.

    pytest's temporary directories are mode 0700: Apache's user cannot enter them.
    """
    base = Path(tempfile.mkdtemp(prefix="pyiip-apache-"))
    base.chmod(0o755)
    root = base / "images"
    for path in source.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        target = root / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        directory.chmod(0o755)
    return base, lambda: shutil.rmtree(base, ignore_errors=True)


def apache_conf(directory: Path, port: int, env: dict[str, str], script: Path, user: str | None, procs: int = 2):
    """conf/apache2/pyiip.conf under a minimal httpd.conf (event MPM, mod_fcgid)."""
    modules = "/usr/lib/apache2/modules"
    snippet = replace_lines(
        (CONF / "apache2" / "pyiip.conf").read_text(),
        {
            "Define PYIIP_FCGI": f"Define PYIIP_FCGI {script}",
            "Define PYIIP_DIR": f"Define PYIIP_DIR {script.parent}",
            "Define PYIIP_IMAGES": f"Define PYIIP_IMAGES {env['FILESYSTEM_PREFIX']}",
            "Define PYIIP_LOGFILE": f"Define PYIIP_LOGFILE {env['LOGFILE']}",
            "Define PYIIP_PROCS": f"Define PYIIP_PROCS {procs}",
        },
    )
    extra = {k: v for k, v in env.items() if k not in ("FILESYSTEM_PREFIX", "LOGFILE")}
    snippet = drop_lines(snippet, [rf"^\s*#?\s*FcgidInitialEnv {k}\b" for k in extra])
    lines = "".join(f'    FcgidInitialEnv {k} "{v}"\n' for k, v in extra.items())
    snippet = snippet.replace("<IfModule fcgid_module>\n", f"<IfModule fcgid_module>\n{lines}", 1)
    (directory / "pyiip.conf").write_text(snippet)
    for sub in ("run", "htdocs"):  # not fcgid/: mod_fcgid makes it, owned by the User who binds sockets there
        (directory / sub).mkdir(exist_ok=True)
    identity = f"User {user}\nGroup {user if user != 'nobody' else 'nogroup'}\n" if user else ""
    config = directory / "httpd.conf"
    config.write_text(
        f"""ServerRoot "{directory}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {directory}/run/httpd.pid
DefaultRuntimeDir {directory}/run
ErrorLog {directory}/error.log
LogLevel warn
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_host_module {modules}/mod_authz_host.so
LoadModule alias_module {modules}/mod_alias.so
LoadModule fcgid_module {modules}/mod_fcgid.so
{identity}DocumentRoot {directory}/htdocs
FcgidIPCDir {directory}/fcgid
FcgidProcessTableFile {directory}/fcgid/shm
Include {directory}/pyiip.conf
"""
    )
    return config
