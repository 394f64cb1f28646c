"""pyiip's tests, a package so that `tests.support` imports without a path hack.

unit/<stage>/ mirrors src/pyiip/<stage>/ (no server, no subprocess); integration/ runs the
application in-process on real files; system/ starts real servers and processes. conftest.py marks
each test with its tier from its folder: `pytest -m unit` runs in seconds."""
