"""parse: request text -> typed values, pure (no service, no files, no settings beyond what is passed in).

May import pyiip.model, pyiip.errors and its own modules only.
"""
