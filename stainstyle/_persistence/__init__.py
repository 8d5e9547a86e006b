"""Persistence of fitted normalizers, below the estimators: the model folder and its checks.

:mod:`stainstyle.hub` is the public face (the mixin every normalizer inherits, ``load``,
``load_folder``); this package does the work, in layers. Each module imports only modules listed
before it here:

``json_values``
    JSON values: tagged encoding of tuples, parsing within size and nesting bounds.
``safetensors_file``
    ``model.safetensors``: a reader that checks the header before reading any tensor, through
    one open file; the atomic writer.
``config_schema``
    The saved configuration: folder format versions and the schema every one meets.
``declarations``
    Fitted values against the class's declaration of them (:mod:`stainstyle._fitted`).
``capture``
    A fitted estimator as configuration and tensors, their SHA-256, and the check that what is
    saved will load.
``networks``
    Fitted torch modules: sizes checked on the meta device, then built and filled.
``restore``
    Configuration and tensors back to an estimator, every check before anything is built.
``folder``
    The model folder: its files, folder formats 1 and 2, writing and reading.

Outside the package, these modules import only :mod:`stainstyle._atomic`,
:mod:`stainstyle._fitted`, :mod:`stainstyle.registry` and :mod:`stainstyle._version`: never
:mod:`stainstyle.hub`, :mod:`stainstyle.base`, the methods or :mod:`stainstyle.sst`, which sit
above (``base`` inherits the mixin of ``hub``). Estimator classes are reached only through the
registry, and torch is imported inside the functions that need it, so that the classic methods
load without it.
"""
