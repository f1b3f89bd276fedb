#!/usr/bin/env python
"""Install detectron2 into the current Python environment when no working one is present.

Route (see docs/architecture.md §4): detectron2 is not on PyPI under its own name. ``pb1-detectron2==0.6``
is a re-upload of the v0.6 release *without* the C++ sources, so ``pip install pb1-detectron2``
fails while compiling. We download that sdist from the package index, verify its sha256, and
install its pure-Python packages (core, model-zoo YAMLs, and the three ``detectron2.projects``)
as a wheel named ``detectron2`` without the compiled extension. ``bestie_d2.compat`` then supplies
a placeholder ``detectron2._C`` whose every use raises a clear error.

A detectron2 that already imports (e.g. a source build of current main, with compiled ops) is left
alone. Run: ``python scripts/install_detectron2.py [--force]``.

``--source SRC`` builds detectron2 *from source* instead (compiled ops included, about 3 minutes on
2 cores): SRC is a git URL (``git+https://github.com/facebookresearch/detectron2.git[@REV]``, for
users with internet), a local source tarball (``.tar.gz``) or a local source folder. The source,
its sha256 (tarball) and the commit (git folder, or a ``-main-<sha>`` tarball name) are recorded in
``<venv>/detectron2_source.json``, which ``bestie_d2.compat.detectron2_info`` reports with every result.
"""
import argparse
import hashlib
import html.parser
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
INDEX_URL = os.environ.get("BESTIE_PYPI_SIMPLE", "https://pypi.org/simple/pb1-detectron2/")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "bestie_d2")

# The runtime dependencies of detectron2 0.6, with the pins docs/architecture.md §4 requires.
RUNTIME_DEPS = [
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
    "matplotlib",
    "Pillow<10",
    "setuptools<81",
]

WHEEL_SETUP = '''
from setuptools import setup, find_packages
import glob
PROJECTS = {
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
    "detectron2.projects.panoptic_deeplab": "projects/Panoptic-DeepLab/panoptic_deeplab",
}
configs = [p[len("detectron2/model_zoo/"):] for p in
           glob.glob("detectron2/model_zoo/configs/**/*.yaml", recursive=True)
           + glob.glob("detectron2/model_zoo/configs/**/*.py", recursive=True)]
setup(
    name="detectron2",
    version="0.6",
    description="detectron2 v0.6 Python packages (no compiled ops), installed by bestie_d2",
    packages=find_packages(exclude=("configs", "tests*", "tools*")) + list(PROJECTS.keys()),
    package_dir=PROJECTS,
    package_data={"detectron2.model_zoo": configs},
    python_requires=">=3.6",
)
'''


def detectron2_works(verbose: bool = False) -> bool:
    """True when ``import bestie_d2.compat; import detectron2.modeling`` succeeds in a fresh process."""
    code = (
        "import importlib.util, os\n"
        "spec = importlib.util.spec_from_file_location('bestie_compat', os.path.join(%r, 'bestie_d2', 'compat.py'))\n"
        "compat = importlib.util.module_from_spec(spec); spec.loader.exec_module(compat)\n"
        "compat.prepare_detectron2()\n"
        "import detectron2.modeling, detectron2.model_zoo, detectron2.engine\n"
        "from detectron2 import model_zoo\n"
        "model_zoo.get_config_file('COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml')\n"
    ) % os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0 and verbose:
        print(r.stderr[-3000:])
    return r.returncode == 0


class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href")


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist() -> str:
    """Return the path of the verified sdist, downloading it into the cache when needed."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    dst = os.path.join(CACHE_DIR, SDIST_NAME)
    if os.path.exists(dst) and sha256_of(dst) == SDIST_SHA256:
        return dst
    print(f"[install_detectron2] looking up {SDIST_NAME} on {INDEX_URL}")
    with urllib.request.urlopen(INDEX_URL, timeout=60) as r:
        parser = _LinkParser()
        parser.feed(r.read().decode("utf-8"))
    urls = [u for u in parser.links if SDIST_NAME in u]
    if not urls:
        raise SystemExit(f"[install_detectron2] {SDIST_NAME} not listed at {INDEX_URL}")
    url = urllib.parse.urljoin(INDEX_URL, urls[0])
    tmp = dst + ".part"
    print(f"[install_detectron2] downloading {url.split('#')[0]}")
    with urllib.request.urlopen(url, timeout=300) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f)
    got = sha256_of(tmp)
    if got != SDIST_SHA256:
        os.remove(tmp)
        raise SystemExit(
            f"[install_detectron2] sha256 mismatch for {SDIST_NAME}: got {got}, expected {SDIST_SHA256}"
        )
    os.replace(tmp, dst)
    return dst


def install_from_sdist(sdist: str) -> None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.check_call(pip + RUNTIME_DEPS)
    with tempfile.TemporaryDirectory(prefix="bestie_d2_d2src_") as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = os.path.join(tmp, "pb1-detectron2-0.6")
        if not os.path.isdir(os.path.join(src, "detectron2", "model_zoo", "configs")):
            raise SystemExit("[install_detectron2] the sdist lacks detectron2/model_zoo/configs")
        with open(os.path.join(src, "setup.py"), "w") as f:
            f.write(WHEEL_SETUP)
        for junk in ("setup.cfg", "pb1_detectron2.egg-info"):
            p = os.path.join(src, junk)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
        subprocess.check_call(pip + ["--no-deps", "--no-build-isolation", src])


# Runtime dependencies for a source build of detectron2 main (its setup.py lists most of them; the
# pins of the v0.6 route do not apply: main works with current Pillow).
SOURCE_BUILD_DEPS = ["Pillow>=10", "ninja", "pycocotools>=2.0.2", "fvcore", "iopath", "omegaconf>=2.1", "hydra-core>=1.1",
                     "matplotlib", "tensorboard", "tabulate", "termcolor", "yacs", "cloudpickle", "tqdm"]
SOURCE_RECORD = "detectron2_source.json"


def _source_commit(src: str):
    """Best-effort commit of a source: ``git+URL@REV``, a git folder, or a ``...-main-<sha>.tar.gz`` name."""
    import re

    if src.startswith("git+") and "@" in src.rsplit("/", 1)[-1]:
        return src.rsplit("@", 1)[-1]
    if os.path.isdir(os.path.join(src, ".git")):
        r = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True)
        return r.stdout.strip() or None
    m = re.search(r"-([0-9a-f]{7,40})\.(?:tar\.gz|tgz|zip)$", os.path.basename(src))
    return m.group(1) if m else None


def install_from_source(src: str) -> dict:
    """``pip install --no-build-isolation SRC`` (compiles detectron2._C); returns the source record."""
    import json

    is_url = src.startswith(("git+", "http://", "https://"))
    if not is_url:
        src = os.path.abspath(src)
        if not os.path.exists(src):
            raise SystemExit(f"[install_detectron2] --source {src}: no such file or folder")
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.check_call(pip + SOURCE_BUILD_DEPS)
    print(f"[install_detectron2] building detectron2 from {src} (compiled ops; a few minutes)", flush=True)
    env = dict(os.environ)
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 2))
    subprocess.check_call(pip + ["--no-build-isolation", src], env=env)
    record = {"source": src, "commit": _source_commit(src)}
    if os.path.isfile(src):
        record["sha256"] = sha256_of(src)
    with open(os.path.join(sys.prefix, SOURCE_RECORD), "w") as f:
        json.dump(record, f, indent=2)
    return record


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="reinstall even if detectron2 works")
    ap.add_argument("--source", default=os.environ.get("D2_SOURCE") or None,
                    help="build detectron2 from this git URL, tarball or folder (default: $D2_SOURCE)")
    args = ap.parse_args()
    if args.source:
        marker = os.path.join(sys.prefix, SOURCE_RECORD)
        if not args.force and detectron2_works() and os.path.exists(marker):
            print(f"[install_detectron2] detectron2 built from source is installed ({marker}); leaving it alone")
            return
        rec = install_from_source(args.source)
        if not detectron2_works(verbose=True):
            raise SystemExit("[install_detectron2] detectron2 was built but does not import; see above")
        print(f"[install_detectron2] detectron2 from {rec['source']} (commit {rec['commit']}) installed")
        return
    if not args.force and detectron2_works():
        print("[install_detectron2] a working detectron2 is installed; leaving it alone")
        return
    install_from_sdist(fetch_sdist())
    if not detectron2_works(verbose=True):
        raise SystemExit("[install_detectron2] detectron2 was installed but does not import; see above")
    print("[install_detectron2] detectron2 0.6 (Python-only, no compiled ops) installed")


if __name__ == "__main__":
    import urllib.parse  # noqa: F401  (used by fetch_sdist)

    main()
