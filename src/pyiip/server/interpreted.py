"""The one place the compiled FastCGI loop enters interpreted Python of its own: to run pending signal handlers.

CPython runs a Python signal handler (the responder's SIGTERM/SIGHUP flags)
when the interpreter next checks for it: when a function starts running as
bytecode, or when a system call returns EINTR. Code compiled by mypyc does
neither, and since accept goes straight to C, a responder waiting with idle
connections ran no bytecode at all: a SIGTERM that arrived while it was in
compiled code, not blocked in epoll_wait, stayed pending and the process never
stopped. This module is never compiled (it is not in ``pyiip.compiled``).
"""

from __future__ import annotations


def run_signal_handlers() -> None:
    """Entering this function as bytecode is the check; it has nothing else to do."""
