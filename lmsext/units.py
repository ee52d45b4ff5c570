"""Human forms of sizes and counts (``1.13 MiB``, ``260K``): shared by the engine's messages and the renderings."""

from __future__ import annotations


def format_params(n: int) -> str:
    """Human form of a parameter count: 260K, 1.2M, 7.6B."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value >= 100 or value == int(value) else f"{value:.3g}{unit}"
    return str(n)


def format_bytes(n: int | float) -> str:
    """Human form of a byte count: 1.13 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} TiB"
