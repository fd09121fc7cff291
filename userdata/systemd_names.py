"""systemd unit names for paths, exactly as `systemd-escape --path --suffix=mount` makes them."""

from __future__ import annotations

import posixpath
import string

# systemd keeps ASCII letters, digits, ':', '_' and '.' (except a leading '.'); everything else becomes \xNN.
_KEPT = frozenset(string.ascii_letters + string.digits + ":_.")


def escape_path(path: str) -> str:
    """Escape a filesystem path the way `systemd-escape --path` does (see systemd.unit(5), "String Escaping")."""
    trimmed = posixpath.normpath("/" + path).strip("/") if path.strip("/") else ""
    if not trimmed:
        return "-"
    return "-".join(_escape_component(part, first=index == 0) for index, part in enumerate(trimmed.split("/")))


def _escape_component(part: str, *, first: bool) -> str:
    escaped = []
    for position, char in enumerate(part):
        leading_dot = first and position == 0 and char == "."
        if char in _KEPT and not leading_dot:
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(escaped)


def mount_unit_name(mount_point: str) -> str:
    """The .mount unit systemd generates for an fstab entry at `mount_point` (e.g. /mnt/efs -> mnt-efs.mount)."""
    return f"{escape_path(mount_point)}.mount"
