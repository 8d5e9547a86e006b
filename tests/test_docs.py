"""The documentation site builds with ``mkdocs build --strict`` and documents the public API.

The site is built as a fresh checkout would build it: from a copy of the files git tracks (so
without the generated pictures, which the MkDocs hook must make), with ``mkdocs build --strict``
and no other step. Skipped when the ``docs`` extra (mkdocs, mkdocs-material,
mkdocstrings[python]) is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _support import ROOT, load_script, require_module, run_python

#: Packages whose public names must appear in the API reference.
PACKAGES = (
    "stainstyle",
    "stainstyle.color",
    "stainstyle.methods",
    "stainstyle.augment",
    "stainstyle.data",
    "stainstyle.sst",
    "stainstyle.hub",
    "stainstyle.registry",
    "stainstyle.wsi",
    "stainstyle.metrics",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        require_module(module, extra="docs")
    checkout = tmp_path_factory.mktemp("checkout")
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    assert not (checkout / "docs" / "images").exists()
    out = tmp_path_factory.mktemp("site")
    run_python(["-m", "mkdocs", "build", "--strict", "--site-dir", out], cwd=checkout)
    return out


def public_objects(package: str) -> dict[str, str]:
    """Public classes and functions of a package: ``name -> module.qualname`` where defined.

    Packages with ``__all__`` contribute its names; the others every class and function they
    define themselves.
    """
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == package
        ]
    found = {}
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            found[f"{package}.{name}"] = f"{obj.__module__}.{obj.__qualname__}"
    return found


@pytest.mark.slow
def test_api_reference_lists_every_public_class_and_function(site):
    anchors = set()
    for page in (site / "api").rglob("*.html"):
        anchors |= set(re.findall(r'id="(stainstyle[\w.]*)"', page.read_text()))
    expected = {}
    for package in PACKAGES:
        expected.update(public_objects(package))
    assert len(expected) > 60
    missing = {name: path for name, path in expected.items() if path not in anchors}
    assert not missing


@pytest.mark.slow
def test_pages_show_generated_pictures(site):
    pages = [site / "index.html"] + sorted((site / "methods").glob("*/index.html"))
    assert len(pages) >= 6
    for page in pages:
        html = page.read_text()
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
        assert images, f"{page} shows no picture"
        for src in images:
            assert (page.parent / src).resolve().is_file(), f"{page}: {src} is missing"


@pytest.mark.slow
def test_cli_reference_is_generated_from_the_parser(site):
    html = (site / "cli" / "index.html").read_text()
    for command in ("fit", "normalize", "train-sst", "benchmark"):
        assert f"usage: stainstyle {command}" in html
    assert "cli-help" not in html


def test_sphinx_markup_becomes_markdown():
    require_module("griffe", extra="docs")
    module = load_script(ROOT / "docs" / "scripts" / "sphinx_roles.py")
    text = (
        "See :class:`~stainstyle.base.StainNormalizer` and :func:`make_tiles`.\n"
        "    .. [1] H. Cho et al."
    )
    assert module.sphinx_to_markdown(text) == (
        "See `StainNormalizer` and `make_tiles`.\n    [1] H. Cho et al."
    )
