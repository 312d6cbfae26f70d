"""Repacks EnvPool's wheel with only its Atari and classic-control envs, for the GPU machine.

The whole cp312 wheel (64 MB, most of it MuJoCo, ViZDoom and Box2D builds) does not fit a device
call's 64 MB carry; the GPU benchmark rows step only Atari through EnvPool. Both kept modules'
.so files need nothing but the C and C++ runtimes (readelf -d), so envpool.libs (Qt) goes too.
The wheel's entry.py imports every env family's registration: it is rewritten to import the two
kept, and RECORD is written again for the files the new wheel holds.

    python benchmarks/gpu/trim_envpool.py WHEEL OUT_DIR
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

KEEP = ("atari", "classic_control")
ENTRY = "".join(f"import envpool.{name}.registration  # noqa: F401\n" for name in KEEP)


def kept(name: str) -> bool:
    parts = name.split("/")
    if parts[0] == "envpool.libs":
        return False
    if parts[0] == "envpool" and len(parts) > 2:  # a package under envpool/: an env family
        return parts[1] in (*KEEP, "python")
    return not name.endswith("/RECORD")


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main(wheel: str, out_dir: str) -> Path:
    source = zipfile.ZipFile(wheel)
    record = next(n for n in source.namelist() if n.endswith(".dist-info/RECORD"))
    out = Path(out_dir) / Path(wheel).name
    lines = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if not kept(info.filename):
                continue
            data = source.read(info)
            if info.filename == "envpool/entry.py":
                data = ENTRY.encode()
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)
            lines.append(record_line(info.filename, data))
        target.writestr(record, "\n".join([*lines, f"{record},,"]) + "\n")
    return out


if __name__ == "__main__":
    path = main(*sys.argv[1:3])
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
