"""benchmarks/gpu/trim_envpool.py: the EnvPool wheel for the GPU machine, Atari and classic only."""

import base64
import hashlib
import importlib.util
import sys
import zipfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "trim_envpool.py"
spec = importlib.util.spec_from_file_location("trim_envpool", SCRIPT)
trim_envpool = importlib.util.module_from_spec(spec)
sys.modules["trim_envpool"] = trim_envpool
spec.loader.exec_module(trim_envpool)

FILES = {
    "envpool/__init__.py": b"import envpool.entry\n",
    "envpool/entry.py": b"import envpool.atari.registration\nimport envpool.vizdoom.registration\n",
    "envpool/registration.py": b"def make(): ...\n",
    "envpool/python/api.py": b"# the Python API\n",
    "envpool/atari/atari_envpool.so": b"\x7fELF atari",
    "envpool/atari/registration.py": b"# atari ids\n",
    "envpool/classic_control/registration.py": b"# classic ids\n",
    "envpool/mujoco/gym/registration.py": b"# mujoco ids\n",
    "envpool/mujoco/mujoco_gym_envpool.so": b"\x7fELF mujoco" * 1000,
    "envpool/vizdoom/vizdoom_envpool.so": b"\x7fELF doom",
    "envpool.libs/libQt6Core.so.6": b"\x7fELF qt",
    "envpool-9.9.9.dist-info/METADATA": b"Name: envpool\n",
    "envpool-9.9.9.dist-info/RECORD": b"stale,,\n",
}


def test_the_trimmed_wheel_holds_atari_classic_and_the_api_with_a_true_record(tmp_path):
    wheel = tmp_path / "envpool-9.9.9-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in FILES.items():
            z.writestr(name, data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = trim_envpool.main(str(wheel), str(out_dir))

    z = zipfile.ZipFile(out)
    names = set(z.namelist())
    assert "envpool/atari/atari_envpool.so" in names
    assert "envpool/classic_control/registration.py" in names
    assert {"envpool/python/api.py", "envpool/registration.py", "envpool/__init__.py"} <= names
    assert not any("mujoco" in n or "vizdoom" in n or n.startswith("envpool.libs") for n in names)
    entry = z.read("envpool/entry.py").decode()
    assert "envpool.atari.registration" in entry and "classic_control" in entry
    assert "mujoco" not in entry
    # RECORD: every other file once, with its true hash and size; itself without a hash.
    record = z.read("envpool-9.9.9.dist-info/RECORD").decode().splitlines()
    assert record[-1] == "envpool-9.9.9.dist-info/RECORD,,"
    listed = {line.split(",")[0]: line for line in record[:-1]}
    assert set(listed) == names - {"envpool-9.9.9.dist-info/RECORD"}
    for name, line in listed.items():
        data = z.read(name)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert line == f"{name},sha256={digest},{len(data)}"
