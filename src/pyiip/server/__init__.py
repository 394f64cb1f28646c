"""server: the FastCGI responder, the HTTP front end, the worker supervisor and process limits.

May import respond/ and everything below it; never tools/ or pyiip.cli.
"""
