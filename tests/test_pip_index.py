"""scripts/set_internal_pypi_index.sh: make venv installs from the company index, for this project only,
and no credential lands in a tracked file. Offline: the index is a local file:// one with a wheel made here."""

import os
import shutil
import stat
import subprocess
import sys
import zipfile

from conftest import ROOT


def make_wheel(index_dir, name="tinyivrpkg", version="0.1"):
    """A minimal pure-Python wheel in a PEP 503 index: index_dir/index.html, index_dir/<name>/{index.html, wheel}."""
    (index_dir / name).mkdir(parents=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "ANSWER = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(index_dir / name / wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    (index_dir / "index.html").write_text(f'<a href="{name}/">{name}</a>\n')
    (index_dir / name / "index.html").write_text(f'<a href="{wheel}">{wheel}</a>\n')


def test_venv_installs_from_the_internal_index(tmp_path):
    index = tmp_path / "simple"
    make_wheel(index)
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", project / "Makefile")
    for script in ("set_internal_pypi_index.sh", "unset_internal_pypi_index.sh"):
        shutil.copy(ROOT / "scripts" / script, project / "scripts" / script)
    (project / "lock.txt").write_text("tinyivrpkg==0.1\n")
    secret = f"file://{index}"
    subprocess.run(
        ["bash", project / "scripts" / "set_internal_pypi_index.sh", secret],
        check=True,
        capture_output=True,
    )
    conf = project / ".pip" / "pip.conf"
    assert secret in conf.read_text() and stat.S_IMODE(conf.stat().st_mode) == 0o600
    ignored = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", ".pip/pip.conf"])
    assert ignored.returncode == 0, ".pip/ must be git-ignored: it may hold credentials"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MAKE"))}
    venv = tmp_path / "venv"
    proc = subprocess.run(
        [
            "make",
            "-C",
            project,
            "venv",
            f"VENV={venv}",
            "LOCK=lock.txt",
            f"PYTHON={sys.executable}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = subprocess.run(
        [venv / "bin" / "python", "-c", "import tinyivrpkg; print(tinyivrpkg.ANSWER)"],
        capture_output=True,
        text=True,
    )
    assert got.stdout.strip() == "42"

    subprocess.run(
        ["bash", project / "scripts" / "unset_internal_pypi_index.sh"],
        check=True,
        capture_output=True,
    )
    assert not conf.exists()
    dry = subprocess.run(
        ["make", "-C", project, "-n", "-B", "venv", f"VENV={venv}", "LOCK=lock.txt"],
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    assert "PIP_CONFIG_FILE" not in dry and "pip install" in dry


def test_set_index_refuses_a_non_url(tmp_path):
    proc = subprocess.run(
        ["bash", ROOT / "scripts" / "set_internal_pypi_index.sh", "pypi.example.com"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not an index URL" in proc.stderr
    assert (
        not (ROOT / ".pip" / "pip.conf").exists()
        or "pypi.example.com" not in (ROOT / ".pip" / "pip.conf").read_text()
    )
