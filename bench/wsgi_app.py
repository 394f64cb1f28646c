"""pyiip's Application as a WSGI callable, for the WSGI servers bench/http_modes.py measures (gunicorn, granian).

Imported by each worker after its fork or spawn, so every worker opens its own images, as
``pyiip serve``'s do. Settings come from the environment, as for every pyiip process.
"""

from pyiip import config
from pyiip.respond.app import Application

application = Application(config.load())
