"""Persistence of fitted normalizers: one folder format, local or on the Hugging Face Hub.

Every :class:`~stainstyle.base.StainNormalizer` inherits :class:`NormalizerHubMixin`, built on
:class:`huggingface_hub.ModelHubMixin`, so every method, classic or neural, is saved and loaded
the same way. A saved model is a folder with three files:

``config.json``
    The class name, the constructor parameters (``get_params(deep=False)``), the stainstyle
    version, the JSON-able fitted attributes, and a manifest of the tensors in
    ``model.safetensors`` with the file's SHA-256. A value that fits none of the kinds below
    (a fitted classifier object, say) is recorded as null with a note under ``"unsaved"``.
``model.safetensors``
    Every fitted ``numpy.ndarray`` (and numpy scalar) attribute under its own name, every fitted
    ``torch.Tensor``, and the ``state_dict`` of every fitted ``torch.nn.Module`` with keys
    prefixed ``<attribute>.``.
``README.md``
    A model card with Hub metadata (``library_name: stainstyle``).

Loading reads JSON and safetensors only, never unpickles, and instantiates only classes of the
method registry (:mod:`stainstyle.registry`): built-in methods by their import path (imported
lazily), and classes added with :func:`~stainstyle.registry.register_normalizer`. Networks are
rebuilt by the estimator's ``_build_modules()`` hook and filled with
``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import ModelHubMixin, constants, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from sklearn.utils.validation import check_is_fitted

from stainstyle._modelcard import render_model_card
from stainstyle._version import __version__
from stainstyle.registry import (  # noqa: F401  (re-exported: the persistence API names them)
    BUILTIN_METHODS,
    method_class,
    method_name,
    normalizer_class,
    register_normalizer,
)

logger = logging.getLogger(__name__)

#: Names of the files of a saved model.
CONFIG_NAME = constants.CONFIG_NAME
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
CARD_NAME = "README.md"

#: Version of the folder layout written by :meth:`NormalizerHubMixin.save_pretrained`.
FORMAT_VERSION = 1

#: Suffixes of pickle-based checkpoints, which are never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

#: Numpy dtypes safetensors stores exactly (via torch).
_TENSOR_KINDS = "biuf"


# ------------------------------------------------------------------------------ JSON values
class _NotJSONable(TypeError):
    pass


def _to_json(value: Any) -> Any:
    """Encode a value as JSON data; tuples are tagged so that they come back as tuples."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        if "__tuple__" in value:
            raise _NotJSONable("dict with the reserved key '__tuple__'")
        return {k: _to_json(v) for k, v in value.items()}
    raise _NotJSONable(type(value).__name__)


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


# -------------------------------------------------------------------------------- saving
def _fitted_names(estimator: Any) -> list[str]:
    return sorted(k for k in vars(estimator) if k.endswith("_") and not k.startswith("_"))


def _params_json(estimator: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Constructor parameters as JSON, and a note for each one that is not JSON-able (null)."""
    params, unsaved = {}, {}
    for name, value in estimator.get_params(deep=False).items():
        try:
            params[name] = _to_json(value)
        except _NotJSONable:
            params[name] = None
            unsaved[name] = (
                f"not JSON-serializable ({type(value).__name__}); saved as null, pass "
                f"{name}=... to from_pretrained to restore it"
            )
    return params, unsaved


def fitted_state(estimator: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an estimator into its ``config.json`` content and its tensors.

    Parameters
    ----------
    estimator : StainNormalizer
        A fitted normalizer.

    Returns
    -------
    config : dict
        JSON-able content of ``config.json`` (without the weights' checksum).
    tensors : dict of str to torch.Tensor
        Contiguous CPU tensors for ``model.safetensors``.

    Raises
    ------
    TypeError
        If the estimator has fitted torch modules but no ``_build_modules()`` hook.

    Notes
    -----
    A parameter or fitted attribute that is none of JSON-able, a numeric or boolean ndarray, a
    tensor or a ``torch.nn.Module`` (e.g. a fitted classifier object) is recorded as null, with
    a note under ``"unsaved"`` in the config and a logged warning.
    """
    import torch

    params, unsaved = _params_json(estimator)
    fitted, arrays, modules, tensors = {}, {}, {}, {}
    for name in _fitted_names(estimator):
        value = getattr(estimator, name)
        if isinstance(value, torch.nn.Module):
            state = value.state_dict()
            modules[name] = {"class": type(value).__name__, "n_tensors": len(state)}
            for key, tensor in state.items():
                tensors[f"{name}.{key}"] = tensor.detach().cpu().contiguous().clone()
            continue
        if isinstance(value, torch.Tensor):
            kind, tensor = "tensor", value.detach().cpu().contiguous().clone()
        elif isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in _TENSOR_KINDS:
            kind = "ndarray" if isinstance(value, np.ndarray) else "numpy_scalar"
            array = np.array(value, dtype=value.dtype.newbyteorder("="), order="C", copy=True)
            tensor = torch.from_numpy(array)
        else:
            try:
                fitted[name] = _to_json(value)
            except _NotJSONable as err:
                fitted[name] = None
                unsaved[name] = (
                    f"not JSON-serializable ({err}), not an ndarray, tensor or torch module; "
                    "saved as null"
                )
                logger.warning(
                    "%s.%s (%s) is not saved: only JSON-able values, numeric ndarrays, tensors "
                    "and torch modules are; it is null in the saved model",
                    type(estimator).__name__,
                    name,
                    err,
                )
            continue
        dtype = str(value.dtype)
        arrays[name] = {"kind": kind, "dtype": dtype, "shape": list(tensor.shape)}
        tensors[name] = tensor
    if modules and not hasattr(estimator, "_build_modules"):
        raise TypeError(
            f"{type(estimator).__name__}: has fitted torch modules {sorted(modules)} but no "
            "_build_modules() method to rebuild them when loading"
        )
    config = {
        "stainstyle_format": FORMAT_VERSION,
        "stainstyle_version": __version__,
        "class": type(estimator).__name__,
        "params": params,
        "unsaved": unsaved,
        "fitted": fitted,
        "arrays": arrays,
        "modules": modules,
    }
    return config, tensors


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -------------------------------------------------------------------------------- loading
def _pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)


_CONFIG_KEYS = frozenset({"class", "params", "fitted", "arrays", "modules", "weights_sha256"})


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_NAME
    if not path.is_file():
        pickles = _pickle_files(folder)
        hint = (
            f" (it holds pickle files {pickles}, which stainstyle never loads)" if pickles else ""
        )
        raise FileNotFoundError(f"{path}: not found; {folder} is not a saved model{hint}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict) or "stainstyle_format" not in config:
        raise ValueError(f"{path}: not written by stainstyle's save_pretrained")
    missing = sorted(_CONFIG_KEYS - set(config))
    if missing:
        raise ValueError(f"{path}: incomplete, lacks the keys {missing}")
    if config["stainstyle_format"] != FORMAT_VERSION:
        raise ValueError(
            f"{path}: folder format {config['stainstyle_format']!r} (stainstyle "
            f"{config.get('stainstyle_version')}); this stainstyle {__version__} reads format "
            f"{FORMAT_VERSION}"
        )
    return config


def _read_tensors(folder: Path, expected_sha256: str | None) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / WEIGHTS_NAME
    if not path.is_file():
        pickles = _pickle_files(folder)
        if pickles:
            raise ValueError(
                f"{path}: not found, and the folder holds pickle files {pickles}; stainstyle "
                "loads weights only from safetensors and never unpickles"
            )
        raise FileNotFoundError(f"{path}: not found")
    if _sha256(path) != expected_sha256:
        raise ValueError(
            f"{path}: its SHA-256 does not match the one recorded in {CONFIG_NAME}; the file is "
            "corrupt or was modified"
        )
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err


def _restore(tensor: Any, spec: Mapping[str, Any], key: str, path: Path) -> Any:
    value = tensor if spec["kind"] == "tensor" else tensor.numpy()
    if str(value.dtype) != spec["dtype"] or list(value.shape) != spec["shape"]:
        raise ValueError(
            f"{path}: tensor {key!r} has dtype {value.dtype} and shape {list(value.shape)}, "
            f"{CONFIG_NAME} expects dtype {spec['dtype']} and shape {spec['shape']}"
        )
    if spec["kind"] == "numpy_scalar":
        return value[()]
    return value


def load_folder(folder: str | os.PathLike, cls: type | None = None, **overrides: Any) -> Any:
    """Load a fitted normalizer from a local folder written by ``save_pretrained``.

    Parameters
    ----------
    folder : str or path
        Folder holding ``config.json`` and ``model.safetensors``.
    cls : type, optional
        Expected class (or base class) of the saved normalizer; any registered class if None.
    **overrides
        Constructor parameters replacing the saved ones (e.g. ``device="cuda"``), or
        restoring parameters saved as null.

    Returns
    -------
    StainNormalizer
        The fitted normalizer, networks in eval mode on the CPU.

    Raises
    ------
    FileNotFoundError
        If ``config.json`` or ``model.safetensors`` is missing (naming the file).
    ValueError
        If a file is corrupt, modified, not valid JSON or safetensors, names an unknown class,
        or holds tensors whose names, dtypes or shapes do not match; if the folder holds only
        pickle checkpoints.
    TypeError
        If the saved class is not ``cls`` or a subclass of it.
    """
    folder = Path(folder)
    config = _read_config(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        klass = normalizer_class(config["class"])
    except ValueError as err:
        raise ValueError(f"{config_path}: {err}") from None
    if cls is not None and not issubclass(klass, cls):
        raise TypeError(
            f"{config_path}: holds a {klass.__name__}, not a {cls.__name__}; use "
            "stainstyle.load to load any normalizer"
        )
    tensors = _read_tensors(folder, config.get("weights_sha256"))
    params = {**_from_json(config["params"]), **overrides}
    try:
        estimator = klass(**params)
        estimator._validate_params()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_path}: invalid parameters for {klass.__name__}: {err}") from err
    for name, value in _from_json(config["fitted"]).items():
        setattr(estimator, name, value)
    for name, spec in config["arrays"].items():
        if name not in tensors:
            raise ValueError(f"{weights_path}: lacks tensor {name!r} listed in {CONFIG_NAME}")
        setattr(estimator, name, _restore(tensors.pop(name), spec, name, weights_path))
    if config["modules"]:
        built = estimator._build_modules()
        if set(built) != set(config["modules"]):
            raise ValueError(
                f"{config_path}: lists modules {sorted(config['modules'])}, "
                f"{klass.__name__}._build_modules() builds {sorted(built)}"
            )
        for name, module in built.items():
            prefix = f"{name}."
            state = {
                k[len(prefix) :]: tensors.pop(k) for k in list(tensors) if k.startswith(prefix)
            }
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ValueError(
                    f"{weights_path}: its tensors do not fit module {name!r} "
                    f"({type(module).__name__}): {err}"
                ) from err
            setattr(estimator, name, module.eval())
    if tensors:
        raise ValueError(
            f"{weights_path}: holds tensors not listed in {CONFIG_NAME}: {sorted(tensors)[:10]}"
        )
    return estimator


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


# ---------------------------------------------------------------------------------- mixin
class NormalizerHubMixin(ModelHubMixin):
    """Save, load and share fitted normalizers; inherited by every ``StainNormalizer``.

    Built on :class:`huggingface_hub.ModelHubMixin`, which provides the Hub download, cache
    and upload logic; this class defines the folder format (see the module docstring).

    See Also
    --------
    load : Load any saved normalizer, whatever its class.
    """

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        model_card_kwargs: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Save the fitted normalizer to a folder.

        Writes ``config.json``, ``model.safetensors`` and a model card ``README.md`` into
        ``save_directory`` (created if needed), replacing those three files when present.

        Parameters
        ----------
        save_directory : str or path
            Target folder.
        model_card_kwargs : dict, optional
            Passed to the model card: ``training_data`` (str), ``benchmark`` (dict of metric
            name to value), ``datasets`` (list of Hub dataset ids), ``license`` (str),
            ``repo_id`` (str).
        push_to_hub : bool, default=False
            Also push the folder to the Hub (see :meth:`push_to_hub`).
        repo_id : str, optional
            Hub repository when ``push_to_hub``; defaults to the folder name.
        **push_to_hub_kwargs
            Passed to :meth:`push_to_hub`.

        Returns
        -------
        str or None
            The commit URL when pushed, else None.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the normalizer is not fitted.
        """
        check_is_fitted(self)
        save_directory = Path(save_directory)
        (save_directory / CARD_NAME).unlink(missing_ok=True)
        super().save_pretrained(save_directory, model_card_kwargs=model_card_kwargs)
        if not push_to_hub:
            return None
        # Pushed here rather than by ModelHubMixin, which would pass it a `config` argument.
        return self.push_to_hub(
            repo_id or save_directory.name,
            model_card_kwargs=model_card_kwargs,
            **push_to_hub_kwargs,
        )

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        config, tensors = fitted_state(self)
        weights = save_directory / WEIGHTS_NAME
        save_file(tensors, weights, metadata={"format": "pt"})
        config["weights_sha256"] = _sha256(weights)
        text = json.dumps(config, indent=2, sort_keys=True)
        (save_directory / CONFIG_NAME).write_text(text + "\n", encoding="utf-8")

    def generate_model_card(self, **kwargs: Any):
        """Model card of this normalizer.

        Parameters
        ----------
        **kwargs
            ``training_data``, ``benchmark``, ``datasets``, ``license``, ``repo_id``; see
            :func:`stainstyle._modelcard.render_model_card`.

        Returns
        -------
        huggingface_hub.ModelCard
        """
        return render_model_card(
            class_name=type(self).__name__,
            method=method_name(type(self)),
            version=__version__,
            params=_params_json(self)[0],
            **kwargs,
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload stainstyle normalizer",
        branch: str | None = None,
        create_pr: bool | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Save the fitted normalizer and upload the folder to a Hub repository in one commit.

        Parameters
        ----------
        repo_id : str
            ``"namespace/name"``; created if it does not exist.
        private : bool, optional
            Visibility of a newly created repository (the account default when None).
        token : str, optional
            Hub token; the logged-in token when None.
        commit_message : str
            Commit message.
        branch : str, optional
            Branch to push to; ``main`` when None.
        create_pr : bool, optional
            Open a pull request instead of committing to the branch.
        model_card_kwargs : dict, optional
            See :meth:`save_pretrained`; ``repo_id`` defaults to ``repo_id``.

        Returns
        -------
        str
            URL of the commit.
        """
        check_is_fitted(self)
        return super().push_to_hub(
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            branch=branch,
            create_pr=create_pr,
            model_card_kwargs={"repo_id": repo_id, **(model_card_kwargs or {})},
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **overrides: Any,
    ):
        """Load a fitted normalizer from a local folder or a Hub repository.

        Parameters
        ----------
        pretrained_model_name_or_path : str or path
            A folder written by :meth:`save_pretrained`, or a Hub repository id
            ``"namespace/name"``. With ``HF_HUB_OFFLINE=1`` a repository already in the local
            Hub cache loads without network access.
        revision : str, optional
            Branch, tag or commit id of a Hub repository; pin a commit id for reproducibility.
        cache_dir : str or path, optional
            Hub cache folder (``HF_HUB_CACHE`` when None).
        force_download : bool, default=False
            Download again even when cached.
        local_files_only : bool, default=False
            Use only the local Hub cache.
        token : str or bool, optional
            Hub token for private repositories.
        **overrides
            Constructor parameters replacing the saved ones (e.g. ``device="cuda"``).

        Returns
        -------
        StainNormalizer
            The fitted normalizer, of the saved class; networks in eval mode on the CPU.

        Raises
        ------
        FileNotFoundError
            If the folder or one of its files does not exist.
        OSError
            If the repository cannot be fetched from the Hub or found in the cache.
        ValueError, TypeError
            See :func:`load_folder`.
        """
        name = str(pretrained_model_name_or_path)
        if not os.path.isdir(name):
            if os.path.exists(name):
                raise FileNotFoundError(f"{name}: expected a model folder, got a file")
            if _looks_like_path(name):
                raise FileNotFoundError(f"{name}: no such model folder")
        elif revision is not None:
            raise ValueError(
                f"revision={revision!r}: applies to Hub repositories; {name} is a folder"
            )
        # ModelHubMixin.from_pretrained is bypassed: it would download config.json separately and
        # pass its keys to the constructor; here config and weights are read from one snapshot.
        try:
            return cls._from_pretrained(
                model_id=name,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                **overrides,
            )
        except (EntryNotFoundError, HfHubHTTPError) as err:
            raise OSError(
                f"{name!r} (revision {revision or 'main'}): cannot be fetched from the Hugging "
                f"Face Hub or found in the local cache: {err}"
            ) from err

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        **overrides: Any,
    ):
        if os.path.isdir(model_id):
            folder = model_id
        else:
            # One snapshot, so config and weights come from the same commit.
            folder = snapshot_download(
                repo_id=model_id,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                allow_patterns=[CONFIG_NAME, WEIGHTS_NAME],
            )
        return load_folder(folder, cls, **overrides)


def load(path_or_repo_id: str | os.PathLike, revision: str | None = None, **kwargs: Any):
    """Load any saved normalizer; the class comes from its ``config.json``.

    Parameters
    ----------
    path_or_repo_id : str or path
        A folder written by ``save_pretrained`` or a Hub repository id ``"namespace/name"``.
    revision : str, optional
        Branch, tag or commit id of a Hub repository.
    **kwargs
        Passed to :meth:`NormalizerHubMixin.from_pretrained` (``cache_dir``,
        ``local_files_only``, ``token``, constructor overrides).

    Returns
    -------
    StainNormalizer
        The fitted normalizer.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from stainstyle import GrayNormalizer
    >>> tile = np.full((32, 32, 3), (150, 60, 160), dtype=np.uint8)
    >>> folder = tempfile.mkdtemp()
    >>> _ = GrayNormalizer().fit(tile).save_pretrained(folder)
    >>> type(load(folder)).__name__
    'GrayNormalizer'
    """
    return NormalizerHubMixin.from_pretrained(path_or_repo_id, revision=revision, **kwargs)
