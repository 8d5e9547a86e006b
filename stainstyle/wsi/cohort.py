"""Normalize a cohort of slides on a Dask cluster: one slide per task, a manifest, a QC sheet.

:func:`normalize_slides` runs :func:`~stainstyle.wsi.normalize_slide` once per slide as tasks of
a ``dask.distributed`` cluster: a :class:`~distributed.LocalCluster` of worker processes on
this machine that it starts and closes, or any cluster a given ``Client`` reaches (a scheduler
address, ``dask-jobqueue`` on SLURM, Kubernetes). The workers read the slides and write the
outputs themselves, so every worker must see the input files and the output folder under the
same paths (one machine, or a shared filesystem).

The fitted normalizer is scattered to every worker once (``client.scatter(..., broadcast=True)``),
not sent with each task; it needs no shared filesystem and no saved copy. Each task catches its
slide's errors and returns them, so a corrupt or unreadable slide is reported in the manifest
and the others go on; a worker that dies is replaced and its task retried by Dask (up to the
scheduler's ``allowed-failures``), and a task that still fails is reported the same way.

Outputs are ``<out_dir>/<slide stem>.tiff``, written atomically; a slide whose output exists is
skipped unless ``overwrite=True``, so an interrupted run is finished by running it again. After
every slide the manifest (``manifest.csv``, ``manifest.json``) is rewritten, atomically; at the
end the quality-control sheet ``qc.png`` (:mod:`~stainstyle.wsi.qc`) is drawn.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle._atomic import remove_stale_temporaries
from stainstyle.wsi._backends import import_optional
from stainstyle.wsi.manifest import Manifest, read_manifest, write_manifest
from stainstyle.wsi.normalize import (
    FAILED,
    SKIPPED,
    SlideResult,
    _check_count,
    _disabled,
    normalize_slide,
)
from stainstyle.wsi.qc import SlideQC, slide_qc, thumbnail_side, write_qc_sheet

logger = logging.getLogger(__name__)

#: Suffixes of slide files, for collecting slides from folders: Aperio, generic and OME-TIFF,
#: Hamamatsu, Leica, MIRAX, Philips, Sakura, Ventana and Zeiss.
SLIDE_SUFFIXES = frozenset(
    {".svs", ".tif", ".tiff", ".btf", ".tf8", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs",
     ".svslide", ".bif", ".czi"}
)  # fmt: skip

#: Suffix of the normalized slides.
OUTPUT_SUFFIX = ".tiff"

#: Name of the quality-control sheet in the output folder.
QC_NAME = "qc.png"


def plan_outputs(
    paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike
) -> list[tuple[Path, Path]]:
    """Where each slide's output goes: ``<out_dir>/<slide stem>.tiff``, checked.

    Parameters
    ----------
    paths : sequence of str or path-like
        The slides.
    out_dir : str or path-like
        The output folder.

    Returns
    -------
    list of (pathlib.Path, pathlib.Path)
        ``(slide, output)`` in input order.

    Raises
    ------
    ValueError
        For no slides, two slides with the same stem (their outputs would collide), or an
        output folder that is the folder of a slide (outputs are never written beside the
        inputs, where one could replace a slide).
    """
    sources = [Path(path) for path in paths]
    if not sources:
        raise ValueError("paths: expected at least one slide, got none")
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    seen: dict[str, Path] = {}
    plan = []
    for source in sources:
        if resolved == source.resolve().parent:
            raise ValueError(
                f"out_dir: {out_dir} is the folder of the slide {source}; outputs are never "
                "written beside the inputs, choose another out_dir"
            )
        output = out_dir / (source.stem + OUTPUT_SUFFIX)
        other = seen.setdefault(output.name, source)
        if other != source:
            raise ValueError(
                f"paths: {other} and {source} would both be written as {output}; rename one, "
                "or normalize them in separate runs"
            )
        plan.append((source, output))
    return plan


def normalize_slides(
    paths: Sequence[str | os.PathLike],
    normalizer,
    out_dir: str | os.PathLike,
    *,
    client=None,
    workers: int | None = None,
    overwrite: bool = False,
    mpp: float | None = None,
    tile_size: int = 256,
    compression: str = "jpeg",
    jpeg_quality: int = 90,
    sample: int = 256,
    random_state: int = 0,
    progress: bool | None = True,
    qc: bool = True,
) -> Manifest:
    """Normalize many slides, one per task on a Dask cluster, with a manifest and a QC sheet.

    Parameters
    ----------
    paths : sequence of str or path-like
        The slide files. Two slides with the same stem are refused (same output name).
    normalizer : StainNormalizer
        A fitted normalizer; scattered once to every worker.
    out_dir : str or path-like
        Output folder, created if needed; not the folder of a slide.
    client : distributed.Client, optional
        The cluster to run on; by default a ``LocalCluster`` of ``workers`` processes with
        one thread each is started and closed afterwards.
    workers : int, optional
        Worker processes of the local cluster (default 2); not with ``client``.
    overwrite : bool, default=False
        Normalize slides whose output exists again; by default they are skipped.
    mpp, tile_size, compression, jpeg_quality, sample, random_state
        As for :func:`~stainstyle.wsi.normalize_slide`, for every slide.
    progress : bool or None, default=True
        Progress bar over the slides; None shows it only on a terminal.
    qc : bool, default=True
        Draw the quality-control sheet ``qc.png``.

    Returns
    -------
    Manifest
        Every slide's :class:`~stainstyle.wsi.SlideResult`, in input order.

    Raises
    ------
    ValueError
        For no slides, colliding output names, an output folder that holds a slide, or
        invalid options. Errors of single slides are never raised: they are in the manifest.

    Examples
    --------
    >>> from stainstyle import load
    >>> from stainstyle.wsi import normalize_slides
    >>> if __name__ == "__main__":  # worker processes start by importing the script
    ...     manifest = normalize_slides(["a.svs", "b.ndpi"], load("my-model"), "out", workers=4)
    ...     print([r.status for r in manifest.results])  # doctest: +SKIP
    """
    plan = plan_outputs(paths, out_dir)
    _check_count("sample", sample)
    if client is not None and workers is not None:
        raise ValueError(f"workers: give workers or client, not both (workers={workers!r})")
    if client is None:
        workers = _check_count("workers", 2 if workers is None else workers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    options = {
        "mpp": mpp, "tile_size": tile_size, "compression": compression,
        "jpeg_quality": jpeg_quality, "sample": sample, "random_state": random_state,
        "overwrite": overwrite,
    }  # fmt: skip
    ledger = _Ledger(out_dir, plan, normalizer, options)
    logger.info("normalizing %d slides into %s", len(plan), out_dir)
    with _cluster(client, workers) as dask_client:
        for index, result, entry in _run_tasks(
            dask_client, plan, normalizer, options, qc, progress
        ):
            ledger.record(index, result, entry)
    remove_stale_temporaries(out_dir)  # what a worker killed mid-write left
    manifest = ledger.finish(qc)
    logger.info(
        "%d slides: %d written, %d skipped, %d failed; manifest %s",
        len(plan), len(manifest.written), len(manifest.skipped), len(manifest.failed),
        manifest.csv_path,
    )  # fmt: skip
    return manifest


# ---------------------------------------------------------------------------- the tasks
def _run_slide(
    source: Path, output: Path, normalizer, options: dict[str, Any], qc_side: int | None
) -> tuple[SlideResult, SlideQC | None]:
    """One slide's task on a worker: normalize it, then gather its QC entry; never raises.

    ``qc_side`` is the side of the QC thumbnails; None: no QC entry.
    """
    started = time.perf_counter()
    try:
        result = normalize_slide(source, normalizer, output, progress=False, **options)
    except Exception as error:  # reported in the manifest; the other slides go on
        seconds = time.perf_counter() - started
        result = SlideResult(source, output, FAILED, seconds, error=_describe(error))
    if qc_side is None:
        return result, None
    try:
        entry = slide_qc(
            result,
            normalizer,
            side=qc_side,
            tile_size=options["tile_size"],
            mpp=options["mpp"],
            random_state=options["random_state"],
        )
    except Exception as error:  # the sheet shows the slide without QC; its result stands
        logger.warning("%s: no quality-control entry (%s)", source, _describe(error))
        entry = SlideQC(source.name, result.status, None, None, error=result.error)
    return result, entry


def _run_tasks(
    client, plan: list[tuple[Path, Path]], normalizer, options, qc: bool, progress
) -> Iterator[tuple[int, SlideResult, SlideQC | None]]:
    """Submit one task per slide and yield ``(index, result, qc)`` as each one finishes."""
    from tqdm.auto import tqdm

    distributed = import_optional("distributed")
    shipped = client.scatter(normalizer, broadcast=True, hash=False)
    qc_side = thumbnail_side(len(plan)) if qc else None
    futures = {
        client.submit(_run_slide, source, output, shipped, options, qc_side, pure=False): index
        for index, (source, output) in enumerate(plan)
    }
    try:
        with tqdm(total=len(plan), unit="slide", disable=_disabled(progress)) as bar:
            for future in distributed.as_completed(futures):
                index = futures[future]
                try:
                    result, entry = future.result()
                except Exception as error:  # the task itself failed: its worker kept dying
                    source, output = plan[index]
                    result = SlideResult(source, output, FAILED, error=_describe(error))
                    entry = SlideQC(source.name, FAILED, None, None, error=result.error)
                bar.update()
                yield index, result, entry
    finally:
        client.cancel([*futures, shipped])


@contextlib.contextmanager
def _cluster(client, workers: int) -> Iterator[Any]:
    """``client``, or a ``LocalCluster`` of ``workers`` processes for the block."""
    if client is not None:
        yield client
        return
    distributed = import_optional("distributed")
    cluster = distributed.LocalCluster(
        n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0"
    )
    with cluster, distributed.Client(cluster) as local:
        logger.info(
            "started a local Dask cluster of %d worker processes (dashboard %s)",
            workers,
            local.dashboard_link,
        )
        yield local


# ---------------------------------------------------------------------------- reporting
class _Ledger:
    """The slides finished so far: the manifest rewritten after each, the QC sheet at the end."""

    def __init__(self, out_dir: Path, plan: list[tuple[Path, Path]], normalizer, options: dict):
        self.out_dir, self.normalizer = out_dir, normalizer
        self.run = {"normalizer": type(normalizer).__name__, **options}
        self.earlier = read_manifest(out_dir)
        self.results: list[SlideResult | None] = [None] * len(plan)
        self.entries: list[SlideQC | None] = [None] * len(plan)

    def record(self, index: int, result: SlideResult, entry: SlideQC | None) -> None:
        """Add a finished slide, log it and rewrite the manifest."""
        self.results[index] = _with_earlier(result, self.earlier)
        self.entries[index] = entry
        done = [i for i, r in enumerate(self.results) if r is not None]
        _log_result(result, len(done), len(self.results))
        write_manifest(
            self.out_dir,
            [self.results[i] for i in done],
            details=[_details(self.entries[i], self.results[i], self.normalizer) for i in done],
            run=self.run,
        )

    def finish(self, qc: bool) -> Manifest:
        """The manifest of the whole run, with the QC sheet drawn when ``qc``."""
        sheet = None
        if qc:
            sheet = write_qc_sheet(
                self.out_dir / QC_NAME,
                self.entries,
                getattr(self.normalizer, "stain_matrix_", None),
                f"stainstyle {type(self.normalizer).__name__}: {self.out_dir}",
            )
        return Manifest(tuple(self.results), self.out_dir, sheet)


def _describe(error: BaseException) -> str:
    """An error in one line: its reason, or its type and message.

    A slide's errors (``SlideReadError``, ``SlideRequestError``) give their reason alone: the
    slide is named beside it, in the manifest and the log.
    """
    reason = getattr(error, "reason", None)
    text = reason if isinstance(reason, str) else f"{type(error).__name__}: {error}"
    return text.replace("\n", " ")


def _with_earlier(result: SlideResult, earlier: dict[str, dict[str, Any]]) -> SlideResult:
    """A skipped slide with the tile counts the run that wrote it recorded, when known."""
    row = earlier.get(str(result.input))
    if result.status != SKIPPED or row is None or row.get("output") != str(result.output):
        return result
    try:
        tiles, passthrough = int(row["tiles"]), int(row["passthrough_tiles"])
    except (KeyError, TypeError, ValueError):
        return result
    return SlideResult(result.input, result.output, SKIPPED, result.seconds, tiles, passthrough)


def _details(entry: SlideQC | None, result: SlideResult, normalizer) -> dict[str, Any]:
    """Fields of a slide's JSON row beyond the CSV's: stain vectors, angles, notes."""
    details: dict[str, Any] = {}
    statistics = result.statistics
    if statistics is not None and not statistics.modelled:
        details["note"] = f"written unchanged: the method cannot model it ({statistics.reason})"
    if entry is None:
        return details
    for key in ("stains_before", "stains_after"):
        matrix = getattr(entry, key)
        if matrix is not None:
            details[key] = np.round(matrix, 6).tolist()
    angles = entry.stain_angles(getattr(normalizer, "stain_matrix_", None))
    if angles is not None:
        details["stain_angles_after"] = [round(a, 3) for a in angles]
    return details


def _log_result(result: SlideResult, done: int, total: int) -> None:
    if result.status == FAILED:
        logger.error("error: %s: %s", result.input, result.error)
    else:
        logger.info(
            "[%d/%d] %s %s (%.1f s)", done, total, result.status, result.input, result.seconds
        )
