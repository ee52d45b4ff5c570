"""Run an lmsext magic in the test shell and capture what it displays."""

from __future__ import annotations

from IPython.utils.capture import capture_output


def run(ip, line, cell=None):
    """Run a magic (``%name args`` or ``%%name args`` + cell) under capture_output; (value, captured)."""
    with capture_output() as cap:
        if line.startswith("%%"):
            name, _, args = line[2:].partition(" ")
            value = ip.run_cell_magic(name, args, cell or "")
        else:
            name, _, args = line.lstrip("%").partition(" ")
            value = ip.run_line_magic(name, args)
    return value, cap
