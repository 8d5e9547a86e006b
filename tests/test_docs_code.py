"""The code of README.md and of every page of docs/ runs, and its commands parse.

- **Python blocks**: the ```` ```python ```` blocks of a page run in order, in one namespace, as a
  reader would paste them into one session: in a fresh process, in a temporary folder. A page
  whose blocks need files (slides, a folder of tiles) gets them from a setup of this module that
  makes them from the library's synthetic tiles, as the reader would have their own. A block
  that cannot run here says why in the page, on the line before it:
  ``<!-- docs-test: not run: REASON -->`` (a Hub upload, a cluster), or that it is an excerpt of
  a script that ``tests/test_examples.py`` runs: ``<!-- docs-test: excerpt PATH -->``; its lines
  must then appear in that script, in order.
- **Commands** of the shell blocks: every ``stainstyle ...`` line is parsed by the command's own
  parser; every ``python benchmarks/NAME.py ...`` line by the script's ``parse_args`` when it has
  one; every script named exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from _support import ROOT, load_script, require_module

from stainstyle.cli import build_parser
from stainstyle.cli.benchmark import BENCHMARKS_DIR, benchmark_names

PAGES = ["README.md"] + sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/**/*.md"))

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!-- docs-test: (not run|excerpt):? (.+?) -->\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page."""

    page: str
    line: int
    language: str
    code: str
    marker: tuple[str, str] | None  # ("not run", reason) or ("excerpt", path)


def page_blocks(page: str) -> list[Block]:
    """The fenced code blocks of a page, each with the ``docs-test`` marker on the line before."""
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.match(before)
        blocks.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 1,
                language=match.group(1),
                code=match.group(2),
                marker=(marker.group(1), marker.group(2)) if marker else None,
            )
        )
    return blocks


# ------------------------------------------------------------------------ files the pages read
#: Writes synthetic whole slides: ``_slide(path)`` makes a 4096 x 3072 px pyramid at 0.5 um/px
#: of synthetic H&E tiles (192 tiles of 256 px); other extensions are links to a ``.tiff``.
_SLIDES = """
import os
import numpy as np
from stainstyle.data import make_tiles
from stainstyle.wsi import write_pyramid

def _slide(path, seed=0, across=16, down=12):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    stem, ext = os.path.splitext(path)
    written = path if ext in (".svs", ".tif", ".tiff") else stem + ".tiff"
    tiles, _ = make_tiles(across * down, "utrecht", size=256, seed=seed)
    rows = [np.concatenate(list(tiles[r * across : (r + 1) * across]), axis=1) for r in range(down)]
    write_pyramid(written, rows, size=(256 * across, 256 * down), mpp=0.5, magnification=20)
    if written != path:
        os.symlink(os.path.basename(written), path)
"""

#: Per page: Python run before its blocks, making the files and variables the page assumes.
SETUP = {
    "README.md": _SLIDES + "_slide('a.svs', 1)\n_slide('b.ndpi', 2)\n",
    "docs/api/wsi.md": _SLIDES + "_slide('a.svs', 1)\n_slide('b.ndpi', 2)\n",
    "docs/wsi.md": _SLIDES
    + "_names = ['lab_a/1.svs', 'lab_a/2.svs', 'lab_a/3.ndpi', 'lab_b/17.svs']\n"
    "for _i, _name in enumerate(_names):\n"
    "    _slide(_name, _i)\n",
    "docs/api/separation.md": """
from stainstyle.data import make_tiles

tile = make_tiles(1, "radboud", size=128, seed=0)[0][0]  # uint8 (128, 128, 3)
""",
    "docs/hub.md": """
from stainstyle.data import make_tiles
from stainstyle.metrics import ssim

target_tiles, _ = make_tiles(16, "radboud", size=64, seed=0)
measured_ssim = float(ssim(target_tiles[0], target_tiles[1]))
""",
    "docs/sst.md": """
import os
from PIL import Image
from stainstyle.data import make_tiles

for _label in (0, 1):
    _tiles, _ = make_tiles(8, "radboud", size=64, tumor_fraction=_label, seed=_label)
    os.makedirs(f"target_lab/radboud/{_label}")
    for _i, _tile in enumerate(_tiles):
        Image.fromarray(_tile).save(f"target_lab/radboud/{_label}/{_i}.png")
other_lab_tiles, _ = make_tiles(4, "utrecht", size=64, seed=2)
""",
}

#: Pages with blocks that read or write whole slides (the ``wsi`` extra).
_NEEDS_WSI = {"README.md", "docs/api/wsi.md", "docs/wsi.md"}

#: Runs the setup in a namespace of its own and hands the page only the data it made (no
#: module or function, no name starting with ``_``), so that a block that forgets an import
#: fails; then runs the blocks in one namespace.
_RUNNER = """
import json, sys, types
(setup_name, setup), *blocks = json.load(open(sys.argv[1]))
made = {}
exec(compile(setup, setup_name, "exec"), made)
namespace = {"__name__": "__docs__"}
namespace.update(
    (k, v) for k, v in made.items()
    if not k.startswith("_") and not isinstance(v, (types.ModuleType, types.FunctionType))
)
for name, code in blocks:
    print(f"--- running {name}", flush=True)
    exec(compile(code, name, "exec"), namespace)
"""


def _python_pages() -> list[str]:
    return [p for p in PAGES if any(b.language == "python" for b in page_blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", _python_pages())
def test_python_blocks_run(page, tmp_path):
    if page in _NEEDS_WSI:
        for module in ("tifffile", "imagecodecs", "tiffslide"):
            require_module(module, "wsi")
    runnable = [b for b in page_blocks(page) if b.language == "python" and b.marker is None]
    program = [("setup of " + page, SETUP.get(page, ""))]
    program += [(f"{page}:{b.line}", b.code) for b in runnable]
    (tmp_path / "blocks.json").write_text(json.dumps(program))
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    completed = subprocess.run(
        [sys.executable, "-c", _RUNNER, "blocks.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, (completed.stdout[-2000:], completed.stderr[-5000:])


def test_every_python_block_runs_or_says_why_not():
    skipped = []
    for page in PAGES:
        for block in page_blocks(page):
            if block.language in ("python", "py") and block.marker is not None:
                kind, argument = block.marker
                assert len(argument.split()) >= 1, f"{page}:{block.line}: no reason given"
                skipped.append((page, block.line, kind))
            assert block.language != "py", f"{page}:{block.line}: write ```python"
    # Every not-run block is one of a few kinds, all listed in the pages themselves.
    assert len(skipped) <= 10, skipped


def _lines(code: str) -> list[str]:
    return [line.strip() for line in code.splitlines() if line.strip()]


def test_excerpts_match_their_scripts():
    excerpts = [b for p in PAGES for b in page_blocks(p) if b.marker and b.marker[0] == "excerpt"]
    assert excerpts
    for block in excerpts:
        script = ROOT / block.marker[1]
        assert script.is_file(), f"{block.page}:{block.line}: {script} does not exist"
        source = iter(_lines(script.read_text(encoding="utf-8")))
        for line in _lines(block.code):
            base = line.split("  #")[0].rstrip()  # the page may comment a line
            assert any(s.startswith(base) for s in source), (
                f"{block.page}:{block.line}: {line!r} is not in {block.marker[1]} (in order)"
            )


# ------------------------------------------------------------------------------------ commands
def shell_commands() -> list[tuple[str, int, list[str]]]:
    """``(page, line, argv)`` of every command in the shell blocks (continuations joined)."""
    commands = []
    for page in PAGES:
        for block in page_blocks(page):
            if block.language not in ("bash", "sh", "console", "shell"):
                continue
            text = re.sub(r"\\\n\s*", " ", block.code)
            for line in text.splitlines():
                for command in line.split(" && "):
                    argv = shlex.split(command, comments=True)
                    if argv:
                        commands.append((page, block.line, argv))
    return commands


def test_stainstyle_commands_of_the_docs_parse():
    parser = build_parser()
    checked = 0
    for page, line, argv in shell_commands():
        if argv[0] != "stainstyle":
            continue
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{page}:{line}: {shlex.join(argv)} does not parse")
        if args.command == "benchmark":
            assert args.name in benchmark_names(), f"{page}:{line}: no benchmark {args.name}"
        checked += 1
    assert checked >= 10


def test_script_commands_of_the_docs_parse():
    checked = 0
    for page, line, argv in shell_commands():
        if Path(argv[0]).name not in ("python", "python3") or len(argv) < 2:
            continue
        if not argv[1].startswith(("benchmarks/", "examples/")):
            continue
        script = ROOT / argv[1]
        assert script.is_file(), f"{page}:{line}: {argv[1]} does not exist"
        if script.parent == BENCHMARKS_DIR:
            module = load_script(script)
            if hasattr(module, "parse_args"):
                try:
                    module.parse_args(argv[2:])
                except SystemExit:
                    pytest.fail(f"{page}:{line}: {shlex.join(argv)} does not parse")
        checked += 1
    assert checked >= 15


#: Characters of a code line that the site shows at 1280 px, left of the copy button.
CODE_WIDTH = 76


def test_long_shell_lines_are_broken():
    """Commands on the site fit their code box at 1280 px, so none hides under the copy button.

    The quickstart's Python fits too; README.md, shown by code hosts, scrolls instead.
    """
    for page in PAGES:
        if not page.startswith("docs/"):
            continue
        for block in page_blocks(page):
            shell = block.language in ("bash", "sh", "console", "shell")
            if shell or page == "docs/quickstart.md":
                for number, line in enumerate(block.code.splitlines()):
                    where = f"{page}:{block.line + number + 1}"
                    assert len(line) <= CODE_WIDTH, f"{where}: {len(line)} characters"


def test_marker_syntax():
    text = textwrap.dedent(
        """\
        <!-- docs-test: not run: uploads to the Hugging Face Hub -->
        ```python
        push()
        ```
        """
    )
    (block,) = [Block("x", 1, m.group(1), m.group(2), None) for m in _FENCE.finditer(text)]
    assert block.code == "push()\n"
    assert _MARKER.match(text.splitlines()[0]).group(2) == "uploads to the Hugging Face Hub"


def test_cli_help_fits_the_code_box():
    """The help texts the site renders (docs/scripts/hooks.py) are 72 columns wide at most."""
    hooks = load_script(ROOT / "docs" / "scripts" / "hooks.py")
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    for command in ["", *subparsers.choices]:
        for line in hooks._help(command).splitlines():
            assert len(line) <= 72, f"stainstyle {command} --help: {line!r}"
