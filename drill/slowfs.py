"""A slow but healthy "EFS" for one node: a FUSE passthrough over the shared tmpfs, mounted over that node's view,
that delays every write request before passing it on (reads, metadata and fsync are not delayed).

`python -m drill.slowfs BACKING MOUNTPOINT --delay 1.5 --monitor-delay 1.5`: `--monitor-delay` is the delay of a
write under `.efs-ha/` (the agent's EFS monitor file), `--delay` of every other write. Runs until SIGTERM/SIGINT or
until the mount is removed. Needs /dev/fuse, libfuse.so.2 (Debian `libfuse2`) and the `fusepy` module (PyPI),
which `ensure_fuse()` installs into a drill-only directory outside the project's virtualenv when missing.

Why FUSE: device-mapper (`dm-delay`) is not in this kernel (no /dev/mapper, no modules), and the kernel has no
NFS client here; FUSE is the one way to make a real file system slow underneath an unmodified agent.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PYLIB = Path("/var/cache/efs-ha-drill/pylib")
FUSEPY = "fusepy==3.0.1"
MONITOR_DIR = ".efs-ha"


def _libfuse_present() -> bool:
    result = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False)
    return "libfuse.so.2" in result.stdout


def ensure_fuse(log: Any = print) -> str | None:
    """None when the slow file system can run here, else why not. Installs libfuse2 (apt) and fusepy (pip, into
    a drill-only --target directory) when missing; both come from the machine's ordinary package registries."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine (the kernel or the container offers no FUSE)"
    if not _libfuse_present():
        if not shutil.which("apt-get"):
            return "libfuse.so.2 is missing and there is no apt-get to install libfuse2"
        log("slow EFS: installing libfuse2 (apt-get)")
        installed = subprocess.run(["apt-get", "install", "-y", "-q", "libfuse2"], capture_output=True, text=True,
                                   check=False, timeout=300)
        if installed.returncode != 0 or not _libfuse_present():
            return f"apt-get install libfuse2 failed: {installed.stderr.strip()[-300:]}"
    if not (PYLIB / "fuse.py").exists():
        log(f"slow EFS: installing {FUSEPY} into {PYLIB}")
        installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(PYLIB),
                                    FUSEPY], capture_output=True, text=True, check=False, timeout=300)
        if installed.returncode != 0 or not (PYLIB / "fuse.py").exists():
            return f"pip install {FUSEPY} failed: {installed.stderr.strip()[-300:]}"
    return None


def make_operations(root: str, delay: float, monitor_delay: float) -> Any:
    from fuse import FuseOSError, Operations

    class SlowPassthrough(Operations):  # type: ignore[misc, unused-ignore]
        """fusepy's loopback example, plus a delay on write."""

        use_ns = True

        def __init__(self) -> None:
            self.root = os.path.realpath(root)
            self._monitor: dict[int, bool] = {}
            self.writes = {True: 0, False: 0}  # delayed writes: monitor file or not

        def _full(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def __call__(self, op: str, path: str, *args: Any) -> Any:
            try:
                return super().__call__(op, self._full(path), *args)
            except OSError as error:
                raise FuseOSError(error.errno or errno.EIO) from None

        def access(self, path: str, mode: int) -> None:
            if not os.access(path, mode):
                raise FuseOSError(errno.EACCES)

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(path, mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            os.chown(path, uid, gid)

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            self._monitor[fd] = f"/{MONITOR_DIR}/" in path
            return fd

        def open(self, path: str, flags: int) -> int:
            fd = os.open(path, flags)
            self._monitor[fd] = f"/{MONITOR_DIR}/" in path
            return fd

        def flush(self, path: str, fh: int) -> None:
            os.fsync(fh)

        def fsync(self, path: str, datasync: int, fh: int) -> None:
            if datasync:
                os.fdatasync(fh)
            else:
                os.fsync(fh)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.lstat(path)
            keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
            attrs = {key: getattr(st, key) for key in keys}
            for key in ("st_atime", "st_ctime", "st_mtime"):
                attrs[key] = getattr(st, key + "_ns")
            return attrs

        def link(self, target: str, source: str) -> None:
            os.link(self._full(source), target)

        def mkdir(self, path: str, mode: int) -> None:
            os.mkdir(path, mode)

        def mknod(self, path: str, mode: int, dev: int) -> None:
            os.mknod(path, mode, dev)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(path)]

        def readlink(self, path: str) -> str:
            return os.readlink(path)

        def release(self, path: str, fh: int) -> None:
            self._monitor.pop(fh, None)
            os.close(fh)

        def rename(self, old: str, new: str) -> None:
            os.rename(old, self._full(new))

        def rmdir(self, path: str) -> None:
            os.rmdir(path)

        def statfs(self, path: str) -> dict[str, Any]:
            stv = os.statvfs(path)
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                    "f_frsize", "f_namemax")
            return {key: getattr(stv, key) for key in keys}

        def symlink(self, target: str, source: str) -> None:
            os.symlink(source, target)

        def truncate(self, path: str, length: int, fh: int | None = None) -> None:
            if fh is not None:
                os.ftruncate(fh, length)
                return
            with open(path, "r+b") as handle:
                handle.truncate(length)

        def unlink(self, path: str) -> None:
            os.unlink(path)

        def utimens(self, path: str, times: Any = None) -> None:
            os.utime(path, ns=times) if times else os.utime(path)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            # The slowness: the request waits before it reaches the storage; other requests go on meanwhile.
            monitor = self._monitor.get(fh, False)
            time.sleep(monitor_delay if monitor else delay)
            self.writes[monitor] += 1
            return os.pwrite(fh, data, offset)

        def destroy(self, path: str) -> None:
            print(json.dumps({"k": "writes", "monitor": self.writes[True], "other": self.writes[False]}), flush=True)

    return SlowPassthrough()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill.slowfs")
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--delay", type=float, default=1.5)
    parser.add_argument("--monitor-delay", type=float, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(PYLIB))
    from fuse import FUSE

    monitor_delay = args.delay if args.monitor_delay is None else args.monitor_delay
    operations = make_operations(args.backing, args.delay, monitor_delay)
    print(f"slowfs: {args.backing} -> {args.mountpoint}, write delay {args.delay:g}s "
          f"(monitor file {monitor_delay:g}s)", flush=True)
    # foreground, multithreaded (a delayed write does not hold up reads); root mounts directly (no fusermount).
    # nonempty: it is mounted over the node's view, which holds the shared data (the same files it passes to).
    FUSE(operations, args.mountpoint, foreground=True, nothreads=False, allow_other=True, big_writes=True,
         nonempty=True, fsname="drill-slow-efs", subtype="slowfs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
