"""The ``stainstyle`` command: fit, share and apply normalizers without writing code.

Commands (``stainstyle COMMAND --help`` describes each)::

    stainstyle fit --method macenko --target TARGET --out MODEL_DIR
    stainstyle normalize --model MODEL INPUT... --out OUT_DIR
    stainstyle normalize --method reinhard --target TARGET INPUT... --out OUT_DIR
    stainstyle normalize-slides MODEL SLIDES... --out OUT_DIR [--workers N]
    stainstyle fit --method randstainna --target TARGET --out AUGMENTER_DIR
    stainstyle augment --model AUGMENTER_DIR_OR_REPO [--seed N] INPUT... --out OUT_DIR
    stainstyle augment --method hed [--param sigma=0.2] [--seed N] INPUT... --out OUT_DIR
    stainstyle train-sst --target DIR [--labels CSV] --out MODEL_DIR [--preset cpu|paper]
    stainstyle benchmark table1 [ARGS...]

``--target`` takes one image or folder and can be repeated.

Images (PNG, JPEG, TIFF, BMP) or folders of them go in, searched recursively; every command
reads them through one function (:func:`~stainstyle.cli.inputs.read_images`, built on
:func:`stainstyle.data.images.read_image_data`). A file that cannot be read (corrupt,
truncated, larger than ``--max-pixels``, multi-page, ...), normalized or written is reported by
name; the others continue (``--on-error skip``, the default) or the run stops (``--on-error
stop``). Entries of input folders that are not regular files (FIFOs, sockets, devices, dangling
symbolic links, symbolic link loops) are never opened; they are listed as skipped.

``normalize`` and ``augment`` write each output under the same relative name and in the same
format, with 8 bits per channel, atomically (a temporary file renamed into place), never into an
input folder.
Temporaries left by a run that was killed are removed by the next run in the same output
folder. Ctrl-C stops a run with one line, keeping the outputs already written.

Exit codes: 0 success, 1 some files failed, 2 usage error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM). No Python traceback is shown unless ``--debug`` is given.

Layout: one module per command (:mod:`~stainstyle.cli.fit`, :mod:`~stainstyle.cli.normalize`,
:mod:`~stainstyle.cli.normalize_slides`, :mod:`~stainstyle.cli.augment`,
:mod:`~stainstyle.cli.train_sst`,
:mod:`~stainstyle.cli.benchmark`), each declaring its
arguments and running; :mod:`~stainstyle.cli.app` collects them into :func:`build_parser` and
:func:`main`. What they share lives once: exit codes and usage errors
(:mod:`~stainstyle.cli.errors`), shared options (:mod:`~stainstyle.cli.options`), finding and
reading inputs (:mod:`~stainstyle.cli.inputs`), output folders (:mod:`~stainstyle.cli.outputs`),
the run report (:mod:`~stainstyle.cli.report`), building and fitting estimators
(:mod:`~stainstyle.cli.estimators`), and the process around a run
(:mod:`~stainstyle.cli.process`). No module of the library imports this package; it is the top
layer and may import any other.
"""

from stainstyle.cli.app import build_parser, main
from stainstyle.cli.errors import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    UsageError,
)
from stainstyle.cli.estimators import configure_runtime, make_estimator, parse_params
from stainstyle.cli.inputs import ImageFile, Inputs, collect_images, find_inputs, read_images
from stainstyle.cli.normalize import normalize_images
from stainstyle.cli.outputs import check_out_folder, check_output_folder, remove_stale_outputs
from stainstyle.cli.report import Report
from stainstyle.cli.train_sst import read_labels

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "ImageFile",
    "Inputs",
    "Report",
    "Terminated",
    "UsageError",
    "build_parser",
    "check_out_folder",
    "check_output_folder",
    "collect_images",
    "configure_runtime",
    "find_inputs",
    "main",
    "make_estimator",
    "normalize_images",
    "parse_params",
    "read_images",
    "read_labels",
    "remove_stale_outputs",
]
