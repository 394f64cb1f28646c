"""respond: the application (routing, HTTP semantics), each protocol's replies, health, metrics, the viewer page.

May import pyiip.service and everything below it; never server/, tools/ or pyiip.cli.
"""
