"""Sizes, names and durations as people read them on a terminal or in a log."""

from __future__ import annotations


def human_size(size: float) -> str:
    """Binary units, because blob and disk sizes are powers of two far more often than not."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def short_name(name: str) -> str:
    """A digest is unreadable at full length; 12 hex digits identify a blob in practice."""
    algorithm, sep, encoded = name.partition(":")
    if sep and len(encoded) > 12:
        return f"{algorithm}:{encoded[:12]}"
    return name


def duration(seconds: float) -> str:
    """Short operations read best in seconds, long ones on a clock."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "eta -:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"eta {hours}:{minutes:02d}:{secs:02d}" if hours else f"eta {minutes}:{secs:02d}"


def counted(count: int, noun: str) -> str:
    """*count* and *noun*, the noun plural unless the count is one: ``1 blob``, ``2 blobs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
