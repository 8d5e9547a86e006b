"""Persistence of fitted normalizers: one folder format, local or on the Hugging Face Hub.

Every :class:`~stainstyle.base.StainNormalizer` inherits :class:`NormalizerHubMixin`, built on
:class:`huggingface_hub.ModelHubMixin`, so every method, classic or neural, is saved and loaded
the same way. A saved model (folder format 2) is a folder with three files:

``model.safetensors``
    Every fitted ``numpy.ndarray`` (and numpy scalar) attribute under its own name, every fitted
    ``torch.Tensor``, and the ``state_dict`` of every fitted ``torch.nn.Module`` with keys
    prefixed ``<attribute>.``. Its header metadata holds the complete configuration under
    ``"stainstyle_config"``: the class name, the constructor parameters
    (``get_params(deep=False)``), the stainstyle version, the JSON-able fitted attributes, a
    manifest of the tensors, and ``content_sha256``, a SHA-256 of the configuration and the
    tensors. A value that fits none of the kinds above (a fitted classifier object, say) is
    recorded as null with a note under ``"unsaved"``.
``config.json``
    The same configuration, for people and for the Hub. Loading does not depend on it: when it
    differs from the embedded one, a warning is logged and the embedded one is used.
``README.md``
    A model card with Hub metadata (``library_name: stainstyle``).

Saving is atomic. ``model.safetensors`` is the single commit point: it is written to a
temporary file and renamed over the old one, then ``config.json`` and ``README.md`` are
replaced the same way; no file is deleted before its replacement is complete. Loading reads
the configuration and the tensors from one open of ``model.safetensors``, so a reader sees
either the previous complete model or the new one, even while another process saves into the
folder, and a process killed at any moment of a save leaves a folder that loads (the old model
or the new). The alternative, writing a new folder and swapping it for the old one, was not
chosen: it would delete or displace the other files a user keeps in a model folder (the
``.git`` of a cloned Hub repository, a licence) and break a process whose working directory is
that folder, and it is not atomic on every filesystem.

Loading reads JSON and safetensors only, never unpickles, and instantiates only classes of the
method registry (:mod:`stainstyle.registry`): built-in methods by their import path (imported
lazily), and classes added with :func:`~stainstyle.registry.register_normalizer`. Before
anything is built, the whole configuration is checked against a schema (bounded size and JSON
nesting depth; types of every key; array dtypes from an allowlist), the fitted attributes
against the class's declaration (:mod:`stainstyle._fitted`: names, shapes, finiteness, ranges,
network sizes), and the tensor manifest against the safetensors header (names, dtypes, shapes,
without reading any data).
Networks are built first on the ``meta`` device, which allocates nothing, and compared with the
header, so a configuration can never make the loader allocate more than the tensors the file
holds; they are then rebuilt by the estimator's ``_build_modules()`` hook and filled with
``load_state_dict(strict=True)``. Every problem raises ``ValueError`` naming the file.
Folders of format 1 (configuration only in ``config.json``, with the file's SHA-256 under
``weights_sha256``) still load, checked by the same schema.

This module is the public face of persistence; the work is done below it, in the private
package ``stainstyle._persistence`` (whose docstring lists its layers), which imports neither
this module nor :mod:`stainstyle.base`, the methods or :mod:`stainstyle.sst`.
:mod:`stainstyle.base` imports the mixin from here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from sklearn.utils.validation import check_is_fitted

from stainstyle._atomic import atomic_write_text, remove_stale_temporaries
from stainstyle._modelcard import render_model_card

# Names this module does not use are re-exported: the persistence API offers them from here
# (``from stainstyle.hub import CONFIG_NAME, fitted_state, ...``).
from stainstyle._persistence.capture import fitted_state, params_json  # noqa: F401
from stainstyle._persistence.config_schema import (  # noqa: F401
    FORMAT_VERSION,
    MAX_ENTRIES,
    READABLE_FORMATS,
)
from stainstyle._persistence.folder import (  # noqa: F401
    CARD_NAME,
    CONFIG_METADATA_KEY,
    CONFIG_NAME,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    read_model_folder,
    write_model_files,
)
from stainstyle._persistence.json_values import MAX_CONFIG_CHARS, MAX_JSON_DEPTH  # noqa: F401
from stainstyle._persistence.safetensors_file import (  # noqa: F401
    MAX_ELEMENTS,
    MAX_HEADER_BYTES,
    MAX_NDIM,
)
from stainstyle._version import __version__
from stainstyle.registry import (  # noqa: F401
    BUILTIN_METHODS,
    method_class,
    method_name,
    normalizer_class,
    register_augmenter,
    register_normalizer,
)

#: Options of :meth:`NormalizerHubMixin.from_pretrained` that say what to download.
_DOWNLOAD_OPTIONS = ("revision", "cache_dir", "force_download", "local_files_only", "token")


# ---------------------------------------------------------------------------------- mixin
class NormalizerHubMixin(ModelHubMixin):
    """Save, load and share fitted normalizers; inherited by every ``StainNormalizer``.

    Built on :class:`huggingface_hub.ModelHubMixin`, which provides the Hub download, cache
    and upload logic; this class saves and loads the folder format of the module docstring.

    See Also
    --------
    load : Load any saved normalizer, whatever its class.

    Notes
    -----
    The stain augmenters (:mod:`stainstyle.augment`) inherit it too: they are saved, loaded
    and shared the same way.
    """

    #: What the model card describes: ``"normalizer"`` or ``"augmenter"``.
    _card_kind = "normalizer"

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        model_card_kwargs: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Save the fitted normalizer to a folder, atomically.

        Writes ``model.safetensors`` (tensors and the complete configuration), then
        ``config.json`` and a model card ``README.md`` into ``save_directory`` (created if
        needed), each to a temporary file renamed over the old one. Other files in the folder
        are left alone; temporaries left by a killed save are removed.

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
        ValueError
            If its fitted attributes do not meet the class's declaration (``_fitted_attributes``;
            loading would refuse them), or its configuration is too large.

        Notes
        -----
        A reader loading the folder during the save gets the previous model or the new one,
        and a process killed during the save leaves a folder that loads (see the module
        docstring).
        """
        self._require_fitted()
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(save_directory)
        self._save_pretrained(save_directory)
        card = self.generate_model_card(**(model_card_kwargs or {}))
        atomic_write_text(save_directory / CARD_NAME, str(card))
        if not push_to_hub:
            return None
        # Pushed here rather than by ModelHubMixin, which would pass it a `config` argument.
        return self.push_to_hub(
            repo_id or save_directory.name,
            model_card_kwargs=model_card_kwargs,
            **push_to_hub_kwargs,
        )

    def _require_fitted(self) -> None:
        """Raise ``sklearn.exceptions.NotFittedError`` unless fitted (scikit-learn's check)."""
        check_is_fitted(self)

    def _save_pretrained(self, save_directory: Path) -> None:
        write_model_files(self, save_directory)

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
            params=params_json(self)[0],
            kind=self._card_kind,
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
        self._require_fitted()
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
        _check_folder_or_repo_id(name, revision)
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
    def _from_pretrained(cls, *, model_id: str, **kwargs: Any):
        """Load from a folder, or from one snapshot of a Hub repository (the mixin's hook).

        ``kwargs`` holds the download options of :meth:`from_pretrained` and the constructor
        overrides.
        """
        download = {option: kwargs.pop(option) for option in _DOWNLOAD_OPTIONS}
        if os.path.isdir(model_id):
            folder = model_id
        else:
            # One snapshot, so config and weights come from the same commit.
            folder = snapshot_download(
                repo_id=model_id, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME], **download
            )
        return load_folder(folder, cls, **kwargs)


def _check_folder_or_repo_id(name: str, revision: str | None) -> None:
    """Refuse a file, a path to no folder, and a revision of a local folder."""
    if not os.path.isdir(name):
        if os.path.exists(name):
            raise FileNotFoundError(f"{name}: expected a model folder, got a file")
        if _looks_like_path(name):
            raise FileNotFoundError(
                f"no such model folder: {name} (a Hub repository id is namespace/name)"
            )
    elif revision is not None:
        raise ValueError(f"revision={revision!r}: applies to Hub repositories; {name} is a folder")


def _looks_like_path(name: str) -> bool:
    """Whether a missing ``name`` is meant as a local folder rather than a Hub repository id.

    A Hub id is ``namespace/name``; anything else is a path: a name starting with ``.``, ``/``
    or ``~``, ending with a separator, with no ``/`` or more than one, holding a Windows
    separator, or whose first part is an existing local folder (``models/typo``).
    """
    separators = tuple(filter(None, {"/", os.sep, os.altsep}))
    return (
        name.startswith((".", "~", *separators))
        or name.endswith(separators)
        or name.count("/") != 1
        or any(sep in name for sep in separators if sep != "/")
        or os.path.isdir(name.partition("/")[0])
    )


def load(path_or_repo_id: str | os.PathLike, revision: str | None = None, **kwargs: Any):
    """Load any saved normalizer (or augmenter); the class comes from its saved configuration.

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
    StainNormalizer or Augmenter
        The fitted normalizer, or augmenter (:mod:`stainstyle.augment`).

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


def load_folder(folder: str | os.PathLike, cls: type | None = None, **overrides: Any) -> Any:
    """Load a fitted normalizer from a local folder written by ``save_pretrained``.

    Parameters
    ----------
    folder : str or path
        Folder holding ``model.safetensors`` (and ``config.json``).
    cls : type, optional
        Expected class (or base class) of the saved normalizer; any registered class if None.
    **overrides
        Constructor parameters replacing the saved ones (e.g. ``device="cuda"``), or
        restoring parameters saved as null. Parameters the fitted state depends on (the
        class's ``_fit_dependent_params``, e.g. Reinhard's ``space``) cannot be changed.

    Returns
    -------
    StainNormalizer
        The fitted normalizer, networks in eval mode on the CPU. Machine-local parameters (the
        class's ``_machine_local_params``, e.g. a checkpoint folder or a device) have their
        defaults unless given in ``overrides``.

    Raises
    ------
    FileNotFoundError
        If ``model.safetensors`` is missing, or ``config.json`` of a format-1 folder (naming
        the file).
    ValueError
        If a file is corrupt, modified, not valid JSON or safetensors, too large or too deeply
        nested; if the configuration fails its schema, names an unknown class, or holds fitted
        attributes that do not match the class's declaration (names, shapes, finite values,
        ranges, network sizes); if tensors' names, dtypes or shapes do not match; if the folder
        holds only pickle checkpoints; if an override changes a parameter the fitted state
        depends on (naming the parameter).
    TypeError
        If the saved class is not ``cls`` or a subclass of it.
    """
    return read_model_folder(Path(folder), cls, overrides)
