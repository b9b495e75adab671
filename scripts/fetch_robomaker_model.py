"""Fetch AWS RoboMaker's final API model from the botocore 1.40.60 wheel on the package registry.

botocore dropped the ``robomaker`` service after 1.40.60 (the service was retired on 2025-09-10).
The fan-out Lambda and its tests build a RoboMaker client from that final model, so this script
extracts ``service-2.json``, ``endpoint-rule-set-1.json`` and ``paginators-1.json`` (plus botocore's
LICENSE and NOTICE, Apache-2.0) into ``lambda/fanout/botocore_data/robomaker/2018-06-29/``.
The wheel is verified against a pinned SHA-256. Running it again is a no-op.
"""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

BOTOCORE_VERSION = "1.40.60"
WHEEL_SHA256 = "385336791e37c200020a8991fbefcf1afd6836f27966d007b6e4c8bc96a4173d"
MODEL_DIR = "botocore/data/robomaker/2018-06-29/"
MODEL_FILES = ("service-2.json", "endpoint-rule-set-1.json", "paginators-1.json")
ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "lambda" / "fanout" / "botocore_data"


def _download_wheel(into: Path) -> Path:
    subprocess.run(  # noqa: S603 - fixed argument list, no shell
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(into),
            f"botocore=={BOTOCORE_VERSION}",
        ],
        check=True,
    )
    wheels = sorted(into.glob(f"botocore-{BOTOCORE_VERSION}-*.whl"))
    if not wheels:
        raise SystemExit(f"error: pip did not produce a botocore {BOTOCORE_VERSION} wheel")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(
            f"error: {wheels[0].name} has SHA-256 {digest}, expected {WHEEL_SHA256}; refusing to use it"
        )
    return wheels[0]


def _read_member(wheel: zipfile.ZipFile, name: str) -> bytes:
    names = set(wheel.namelist())
    if name in names:
        return wheel.read(name)
    if f"{name}.gz" in names:
        return gzip.decompress(wheel.read(f"{name}.gz"))
    raise SystemExit(f"error: {name} is missing from the botocore {BOTOCORE_VERSION} wheel")


def main() -> int:
    model_dir = TARGET / "robomaker" / "2018-06-29"
    if all((model_dir / name).is_file() for name in MODEL_FILES):
        return 0
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(_download_wheel(Path(tmp))) as wheel:
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            (model_dir / name).write_bytes(_read_member(wheel, MODEL_DIR + name))
        info = f"botocore-{BOTOCORE_VERSION}.dist-info/"
        for legal in ("LICENSE.txt", "NOTICE"):
            (TARGET / f"botocore-{legal}").write_bytes(wheel.read(info + legal))
    print(f"RoboMaker API model (botocore {BOTOCORE_VERSION}) -> {model_dir.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
