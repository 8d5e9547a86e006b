"""StainStyleTransfer: the stain-style transfer GAN of Cho et al. 2017 as a stain normalizer."""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from stainstyle._fitted import (
    FittedArray,
    FittedBool,
    FittedInt,
    FittedModule,
    FittedRecords,
    FittedUnsaved,
    positive_totals,
)
from stainstyle._validation import Tiles
from stainstyle.base import StainNormalizer, _caller_stacklevel, resolve_device
from stainstyle.color.gray import gray_normalize
from stainstyle.methods.histogram import match_cdf_lut
from stainstyle.sst._torch import build_seeded
from stainstyle.sst.checkpoint import TrainState, load_checkpoint
from stainstyle.sst.classifier import TileClassifier
from stainstyle.sst.discriminator import DCGANDiscriminator
from stainstyle.sst.distributed import Ranks, session
from stainstyle.sst.fusionnet import FusionNet
from stainstyle.sst.inference import DEFAULT_WINDOW, colorize, prepare_generator
from stainstyle.sst.losses import FeaturePreservingLoss
from stainstyle.sst.presets import PRESETS
from stainstyle.sst.reduced import SCALES, guided_upsample, reduce_gray
from stainstyle.sst.setup import GANModules, TrainConfig, make_modules
from stainstyle.sst.train import make_pairs, split_pairs, train

logger = logging.getLogger(__name__)


class FeatureLossDisabledWarning(UserWarning):
    """The feature-preserving loss is off because no classifier and no labels were given."""


class StainStyleTransfer(StainNormalizer):
    """Stain-style transfer (Cho et al. 2017): gray normalization, then a learned colouring.

    ``fit`` trains a FusionNet generator G on target-style tiles to colour their gray
    levels back, as a conditional GAN (DCGAN discriminator on (gray, colour) pairs) with an L1
    reconstruction loss and a feature-preserving loss on a frozen tile classifier.
    ``transform`` gray-normalizes any tile and colours it with G, so tiles from any lab come out
    in the target style.

    Parameters
    ----------
    preset : {"cpu", "paper"}, default="cpu"
        Defaults of the sizes below. ``"paper"``: width 64, 256 px crops, ResNet-34 classifier,
        made for a GPU. ``"cpu"``: width 16, 32 px crops, ResNet-18, trains on 2 CPU cores in
        minutes.
    width, depth : int or None, default=None
        FusionNet width and pooling levels; None takes the preset's.
    crop_size : int or None, default=None
        Side of the training crops, a power of two, and of the inference windows; None takes
        the preset's. Reduced to the largest power of two that fits in the smallest tile.
    train_batch_size : int or None, default=None
        Crops per training step; None takes the preset's.
    max_epochs : int or None, default=None
        Epochs per ``fit`` (``partial_fit`` trains one); None takes the preset's. An epoch is
        ``n_tiles // train_batch_size`` steps.
    time_budget : float or None, default=None
        Stop training after this many seconds; None for no limit.
    lr : float, default=2e-4
        Adam learning rate (betas 0.5, 0.999) of G and D.
    lambda_l1 : float, default=100.0
        Weight of the L1 reconstruction loss (the adversarial loss has weight 1).
    lambda_fp : float, default=1.0
        Weight of the feature-preserving loss; 0 switches it off.
    fp_mode : {"gap_mse", "softmax_kl"}, default="gap_mse"
        Distance of the feature-preserving loss (Cho et al. 2017, Sec. 2.4).
    classifier : TileClassifier or None, default=None
        A fitted classifier whose features the feature-preserving loss compares. If None and
        ``fit`` gets labels ``y``, one is trained on ``(X, y)`` first; if neither, the loss is off
        (with a :class:`FeatureLossDisabledWarning`). ``transform`` never needs it.
    gray_matching : {"none", "histogram"}, default="none"
        ``"none"`` feeds G the plain gray levels, as in Cho et al. ``"histogram"`` first maps the
        gray levels of the tiles to the target tiles' pooled gray histogram
        (:func:`~stainstyle.methods.histogram.match_cdf_lut`), per tile, or pooled per group
        with ``transform(X, groups=slide_ids)``. An extension: it removes the global brightness
        difference between labs, which G cannot tell from tissue content.
    gray_jitter : float, default=0.1
        Strength of the random brightness, contrast and gamma changes of G's gray input during
        training (applied to half the crops), which make G robust to other labs' gray levels.
    validation_fraction : float, default=0.1
        Share of the tiles held out to report the reconstruction PSNR after every epoch.
    window_size : int or None, default=None
        Inference window; tiles larger than it are coloured in overlapping windows, blended.
        None uses :data:`~stainstyle.sst.inference.DEFAULT_WINDOW` (512) or the training crop
        size if that is larger, so that usual tiles go through the generator whole.
    inference_scale : {1.0, 0.5}, default=1.0
        Fraction of the resolution at which ``transform`` runs the generator. Below 1 the
        generator colours a reduced copy of each gray tile (about ``inference_scale ** 2`` of
        the cost) and the colour is brought back to full resolution with the detail of the
        full-resolution gray levels (guided upsampling, :mod:`stainstyle.sst.reduced`). An
        extension, off by default: see the docs for what it costs in colour fidelity.
    checkpoint_dir : str or None, default=None
        Folder for a checkpoint after every epoch (safetensors + JSON).
    resume : bool, default=False
        Continue from the checkpoint in ``checkpoint_dir`` when there is one, up to
        ``max_epochs`` epochs in total.
    warm_start : bool, default=False
        Make ``fit`` continue training the fitted networks for ``max_epochs`` more epochs.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a torch device string.
    random_state : int, default=0
        Seed of the initialization, validation split, sampling and augmentation; same seed,
        same device, same result. Training draws from its own generators (a
        ``torch.Generator`` for the initialization, NumPy generators for the rest), never from
        the global ones, so fits in parallel threads give the same model as a serial fit and the
        caller's random state is left alone.
    verbose : bool, default=False
        Progress bar with running losses, and a line per epoch.
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue (see :class:`~stainstyle.base.StainNormalizer`).
    batch_size : int, default=32
        Inference windows per forward pass (fewer for windows larger than 256 x 256, see
        :func:`~stainstyle.sst.inference.colorize`).
    torch_compile : bool, default=False
        On CUDA, run inference through ``torch.compile`` (slow first call per tile size, then
        faster); ignored on the CPU.

    Attributes
    ----------
    generator_ : FusionNet
        The trained generator, in eval mode.
    discriminator_ : DCGANDiscriminator
        The trained discriminator (needed only to continue training).
    width_, depth_, crop_size_, disc_width_ : int
        Sizes of the networks.
    epoch_ : int
        Epochs trained so far.
    history_ : list of dict
        Per epoch: mean losses (``d``, ``gan``, ``l1``, ``fp``, ``g``), ``val_psnr`` (dB),
        ``steps`` and ``seconds``.
    feature_loss_ : bool
        Whether the feature-preserving loss was used.
    classifier_ : TileClassifier or None
        The classifier trained on ``(X, y)`` when ``fit`` got labels and no ``classifier``.
    n_tiles_fit_ : int
        Tiles seen by the last ``fit``.
    gray_histogram_ : ndarray of shape (256,), dtype int64
        Gray-level histogram of all target tiles of the last ``fit`` (for ``gray_matching``).

    Notes
    -----
    Choices where the paper is silent: the reconstruction loss
    is L1 with weight 100 and the adversarial loss vanilla BCE with weight 1 (pix2pix); the
    feature-preserving loss is the mean squared difference of the classifier's 512-d pooled
    features. Training crops are flipped and rotated by multiples of 90 degrees. Inference
    windows overlap by a quarter of their side and are blended with weights that fade towards
    each window's border. On CUDA, training and inference use bfloat16 autocast (no loss
    scaling needed), inference with channels-last tensors and ``cudnn.benchmark``; the
    feature-preserving loss is computed in float32. Its source statistics
    (``source_statistics``, ``transform(X, groups=...)``) are the pooled gray histogram
    ``(256,)`` int64 of a slide or group, used by ``gray_matching="histogram"``.

    See Also
    --------
    stainstyle.sst.TileClassifier : The classifier of the feature-preserving loss.
    stainstyle.methods.GrayNormalizer : The gray normalization alone.

    References
    ----------
    .. [1] H. Cho, S. Lim, G. Choi, H. Min, "Neural stain-style transfer learning using GAN for
       histopathological images", arXiv:1710.08543, 2017.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> target = rng.integers(60, 200, (4, 32, 32, 3), dtype=np.uint8)
    >>> sst = StainStyleTransfer(
    ...     width=4, depth=2, crop_size=16, max_epochs=1, lambda_fp=0, device="cpu"
    ... )
    >>> sst.fit(target).transform(target[:1]).shape
    (1, 32, 32, 3)
    """

    _parameter_constraints: dict = {
        **StainNormalizer._parameter_constraints,
        "preset": [StrOptions(set(PRESETS))],
        "width": [None, Interval(Integral, 1, None, closed="left")],
        "depth": [None, Interval(Integral, 1, None, closed="left")],
        "crop_size": [None, Interval(Integral, 8, None, closed="left")],
        "train_batch_size": [None, Interval(Integral, 1, None, closed="left")],
        "max_epochs": [None, Interval(Integral, 1, None, closed="left")],
        "time_budget": [None, Interval(Real, 0, None, closed="neither")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lambda_l1": [Interval(Real, 0, None, closed="left")],
        "lambda_fp": [Interval(Real, 0, None, closed="left")],
        "fp_mode": [StrOptions({"gap_mse", "softmax_kl"})],
        "classifier": [None, HasMethods(["features", "predict_proba"])],
        "gray_matching": [StrOptions({"none", "histogram"})],
        "gray_jitter": [Interval(Real, 0, 0.5, closed="both")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "window_size": [None, Interval(Integral, 8, None, closed="left")],
        "inference_scale": [Options(Real, set(SCALES))],
        "checkpoint_dir": [None, str],
        "resume": ["boolean"],
        "warm_start": ["boolean"],
        "device": [str],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
        "torch_compile": ["boolean"],
    }
    _fitted_attributes: dict = {
        "generator_": FittedModule(),
        "discriminator_": FittedModule(),
        "width_": FittedInt(1, 256),
        "depth_": FittedInt(1, 8),
        "crop_size_": FittedInt(8, 4096, power_of_two=True),
        "disc_width_": FittedInt(1, 512),
        "epoch_": FittedInt(0, 2**53),
        "history_": FittedRecords(),
        "feature_loss_": FittedBool(),
        "classifier_": FittedUnsaved(),
        "n_tiles_fit_": FittedInt(1, 2**53),
        "gray_histogram_": FittedArray((256,), kinds="iu", minimum=0, rule=positive_totals()),
    }
    _fit_dependent_params = ("preset", "width", "depth", "crop_size")
    _machine_local_params = ("checkpoint_dir", "resume", "device", "torch_compile")

    def __init__(
        self,
        *,
        preset: str = "cpu",
        width: int | None = None,
        depth: int | None = None,
        crop_size: int | None = None,
        train_batch_size: int | None = None,
        max_epochs: int | None = None,
        time_budget: float | None = None,
        lr: float = 2e-4,
        lambda_l1: float = 100.0,
        lambda_fp: float = 1.0,
        fp_mode: str = "gap_mse",
        classifier: TileClassifier | None = None,
        gray_matching: str = "none",
        gray_jitter: float = 0.1,
        validation_fraction: float = 0.1,
        window_size: int | None = None,
        inference_scale: float = 1.0,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        warm_start: bool = False,
        device: str = "auto",
        random_state: int = 0,
        verbose: bool = False,
        background: str = "passthrough",
        batch_size: int = 32,
        torch_compile: bool = False,
    ):
        self.preset = preset
        self.width = width
        self.depth = depth
        self.crop_size = crop_size
        self.train_batch_size = train_batch_size
        self.max_epochs = max_epochs
        self.time_budget = time_budget
        self.lr = lr
        self.lambda_l1 = lambda_l1
        self.lambda_fp = lambda_fp
        self.fp_mode = fp_mode
        self.classifier = classifier
        self.gray_matching = gray_matching
        self.gray_jitter = gray_jitter
        self.validation_fraction = validation_fraction
        self.window_size = window_size
        self.inference_scale = inference_scale
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.background = background
        self.batch_size = batch_size
        self.torch_compile = torch_compile

    # ------------------------------------------------------------------ persistence contract
    def _build_modules(self) -> dict[str, nn.Module]:
        """Freshly initialized networks keyed by fitted attribute name.

        Their architecture follows from the JSON-able fitted attributes ``width_``, ``depth_``,
        ``crop_size_`` and ``disc_width_``, so saved ``state_dict`` s can be loaded into them.

        Returns
        -------
        dict of str to torch.nn.Module
            ``{"generator_": FusionNet, "discriminator_": DCGANDiscriminator}``.
        """
        return {
            "generator_": FusionNet(1, 3, width=self.width_, depth=self.depth_),
            "discriminator_": DCGANDiscriminator(self.crop_size_, 4, width=self.disc_width_),
        }

    # ------------------------------------------------------------------ fitting
    def partial_fit(self, X: Any, y: Any = None) -> StainStyleTransfer:
        """Train for one more epoch (starting a model if none is fitted).

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of tiles
            Target-style tiles, uint8 or float in [0, 1].
        y : array-like of shape (N,), optional
            Tile labels, used only to train a classifier when none is available yet.

        Returns
        -------
        self
        """
        self._validate_params()
        tiles, y = self._tissue_targets(X, y)
        self._train(tiles, y, extra_epochs=1)
        return self

    def _fit(self, tiles: Tiles, y: Any) -> None:
        if self.warm_start and hasattr(self, "generator_"):
            self._train(tiles, y, extra_epochs=self._preset_value("max_epochs"))
        else:
            self._reset()
            self._train(tiles, y, extra_epochs=None)

    def _reset(self) -> None:
        for name in ("generator_", "discriminator_", "classifier_", "_modules", "_state"):
            if hasattr(self, name):
                delattr(self, name)

    def _preset_value(self, name: str) -> Any:
        value = getattr(self, name)
        return getattr(PRESETS[self.preset], name) if value is None else value

    def _train(self, tiles: Tiles, y: Any, extra_epochs: int | None) -> None:
        """Train; ``extra_epochs=None`` means up to ``max_epochs`` in total (fresh or resumed).

        A fresh model takes its network sizes from the tiles first, since the networks are built
        from them; a fitted one keeps its sizes and continues.

        Under ``torchrun`` (``WORLD_SIZE > 1``) every process runs this with the same tiles and
        parameters, and training is data parallel (:mod:`stainstyle.sst.distributed`).
        """
        device = resolve_device(self.device)
        self._warn_if_sized_for_gpu(device)
        with session(device) as ranks:
            device = ranks.device(device)
            if not hasattr(self, "generator_"):
                sizes = self._network_sizes(tiles)
                self.width_, self.depth_, self.crop_size_, self.disc_width_ = sizes
            config = self._train_config()
            grays = [gray_normalize(img) for img in tiles.images]
            pairs = make_pairs(list(tiles.images), grays)
            training, validation = split_pairs(pairs, self.validation_fraction, self.random_state)
            feature_loss, classifier = self._feature_loss(tiles, y, device)
            modules, state = self._start(feature_loss, config, device, ranks)
            end_epoch = (
                self._preset_value("max_epochs")
                if extra_epochs is None
                else state.epoch + extra_epochs
            )
            train(
                modules,
                training,
                config,
                state,
                end_epoch,
                device=device,
                validation=validation,
                ranks=ranks,
            )
        self._store_fitted(modules, state, feature_loss is not None, classifier, tiles, grays)

    def _warn_if_sized_for_gpu(self, device: torch.device) -> None:
        """Warn when the preset is made for a GPU and training runs elsewhere."""
        preset = PRESETS[self.preset]
        if preset.needs_gpu and device.type != "cuda":
            warnings.warn(
                f"preset={self.preset!r} is sized for a GPU (FusionNet width "
                f"{preset.width}, {preset.crop_size} px crops) but training runs on {device}; "
                "expect hours per epoch. Use preset='cpu' on a machine without CUDA.",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )

    def _network_sizes(self, tiles: Tiles) -> tuple[int, int, int, int]:
        """FusionNet width and depth, crop size and discriminator width for a fresh model.

        The crop is the requested one reduced to the largest power of two that fits in the
        smallest tile.
        """
        min_side = min(min(img.shape[:2]) for img in tiles.images)
        crop = min(self._preset_value("crop_size"), min_side)
        if crop < 8:
            raise ValueError(f"X: tiles must be at least 8x8 pixels, got a side of {min_side}")
        return (
            self._preset_value("width"),
            self._preset_value("depth"),
            2 ** int(np.floor(np.log2(crop))),
            PRESETS[self.preset].disc_width,
        )

    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            crop_size=self.crop_size_,
            batch_size=self._preset_value("train_batch_size"),
            lr=self.lr,
            lambda_l1=self.lambda_l1,
            lambda_fp=self.lambda_fp,
            gray_jitter=self.gray_jitter,
            time_budget=self.time_budget,
            seed=self.random_state,
            verbose=bool(self.verbose),
            checkpoint_dir=self.checkpoint_dir,
        )

    def _feature_loss(
        self, tiles: Tiles, y: Any, device: torch.device
    ) -> tuple[FeaturePreservingLoss | None, TileClassifier | None]:
        """The feature-preserving loss from ``classifier``, ``classifier_`` or ``(X, y)``.

        Returns the loss (None when it is off) and the value ``classifier_`` takes: the classifier
        trained here on ``(X, y)``, else the one an earlier fit trained, else None.
        """
        trained = getattr(self, "classifier_", None)
        if self.lambda_fp == 0:
            return None, trained
        classifier = self.classifier if self.classifier is not None else trained
        if classifier is None and y is not None:
            classifier = trained = self._train_classifier(tiles, y)
        if classifier is None:
            warnings.warn(
                "StainStyleTransfer: no classifier and no labels y were given, so the "
                "feature-preserving loss is off (only the adversarial and L1 losses train the "
                "generator). Pass classifier=TileClassifier(...).fit(X, y), call fit(X, y), or "
                "set lambda_fp=0 to silence this warning.",
                FeatureLossDisabledWarning,
                stacklevel=_caller_stacklevel(),
            )
            return None, trained
        check_is_fitted(classifier)
        return FeaturePreservingLoss(classifier.model_, mode=self.fp_mode).to(device), trained

    def _train_classifier(self, tiles: Tiles, y: Any) -> TileClassifier:
        """The preset's classifier, trained on ``(X, y)`` for the feature-preserving loss."""
        preset = PRESETS[self.preset]
        logger.info(
            "training a %s classifier for the feature-preserving loss", preset.classifier_arch
        )
        return TileClassifier(
            arch=preset.classifier_arch,
            epochs=preset.classifier_epochs,
            device=self.device,
            random_state=self.random_state,
            verbose=self.verbose,
        ).fit(list(tiles.images), y)

    def _start(
        self,
        feature_loss: FeaturePreservingLoss | None,
        config: TrainConfig,
        device: torch.device,
        ranks: Ranks,
    ) -> tuple[GANModules, TrainState]:
        """The networks, optimizers and progress that training continues from.

        Three starts: the run of an earlier ``fit`` in this process (networks, optimizer moments
        and sampler as they were); a model loaded from disk (its networks, fresh optimizer
        moments, a sampler seeded with the epoch); or fresh networks, replaced by the checkpoint
        in ``checkpoint_dir`` when ``resume`` is set and there is one. Each rank of a
        distributed run has its own sampler (seeded with its rank, or its own from the
        checkpoint).
        """
        if hasattr(self, "generator_") and hasattr(self, "_modules"):
            self._modules.feature_loss = feature_loss
            return self._modules, self._state
        if hasattr(self, "generator_"):
            # Loaded from disk: the networks are back, the optimizer moments were not saved.
            modules = make_modules(
                self.generator_, self.discriminator_, feature_loss, config, device
            )
            rng = np.random.default_rng(ranks.seed(self.random_state, self.epoch_))
            return modules, TrainState(epoch=self.epoch_, history=list(self.history_), rng=rng)
        built = build_seeded(self._build_modules, self.random_state)
        modules = make_modules(
            built["generator_"], built["discriminator_"], feature_loss, config, device
        )
        restored = None
        if self.resume and self.checkpoint_dir is not None:
            restored = load_checkpoint(self.checkpoint_dir, modules, device, ranks)
        if restored is None:
            return modules, TrainState.start(ranks.seed(self.random_state))
        logger.info("resuming from epoch %d in %s", restored.epoch, self.checkpoint_dir)
        return modules, restored

    def _store_fitted(
        self,
        modules: GANModules,
        state: TrainState,
        used_feature_loss: bool,
        classifier: TileClassifier | None,
        tiles: Tiles,
        grays: list[np.ndarray],
    ) -> None:
        """Set the fitted attributes from a finished run, and keep the run to continue it."""
        modules.feature_loss = None  # keep no classifier copy on the fitted estimator
        self.__dict__.pop("_runner", None)  # the inference copy of an earlier generator
        self._modules, self._state = modules, state
        self.generator_ = modules.generator.eval()
        self.discriminator_ = modules.discriminator.eval()
        self.epoch_ = state.epoch
        self.history_ = list(state.history)
        self.feature_loss_ = used_feature_loss
        self.classifier_ = classifier
        self.n_tiles_fit_ = len(tiles)
        self.gray_histogram_ = _gray_counts(grays)

    # ------------------------------------------------------------------ transform
    def _source_context(self, tiles: Tiles) -> np.ndarray:
        """Gray-level histogram ``(256,)`` int64 pooled over ``tiles`` (a slide, a group).

        Used by ``gray_matching="histogram"``; without gray matching the mapping ignores it.
        """
        return _gray_counts(gray_normalize(image) for image in tiles.images)

    def _needs_tissue_mask(self) -> bool:
        return False

    def _transform_batch(
        self, batch: np.ndarray, tissue: np.ndarray | None, *, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        device = resolve_device(self.device)
        generator = self._inference_generator(device)
        window = self.window_size or max(self.crop_size_, DEFAULT_WINDOW)
        gray = gray_normalize(batch)
        if self.gray_matching == "histogram":
            if context is not None:
                gray = match_cdf_lut(context, self.gray_histogram_)[gray]
            else:
                gray = np.stack(
                    [match_cdf_lut(_gray_counts([g]), self.gray_histogram_)[g] for g in gray]
                )
        reduced = self.inference_scale < 1
        generator_input = reduce_gray(gray, self.inference_scale) if reduced else gray
        out = colorize(
            generator,
            generator_input,
            window=window,
            overlap=window // 4,
            device=device,
            batch_size=self.batch_size,
            autocast=device.type == "cuda",
        )
        if reduced:
            out = np.stack(
                [
                    guided_upsample(*images)
                    for images in zip(out, generator_input, gray, strict=True)
                ]
            )
        return out, np.zeros(len(batch), dtype=bool)

    def _inference_generator(self, device: torch.device) -> nn.Module:
        """The generator prepared for inference on ``device``, kept until the next fit."""
        key = (self.generator_, device, self.torch_compile)
        runner = self.__dict__.get("_runner")
        if runner is None or runner[0][0] is not key[0] or runner[0][1:] != key[1:]:
            prepared = prepare_generator(self.generator_, device, compile=self.torch_compile)
            runner = self._runner = (key, prepared)
        return runner[1]


def _gray_counts(grays) -> np.ndarray:
    """Pooled 256-bin histogram of uint8 gray images."""
    counts = np.zeros(256, dtype=np.int64)
    for gray in grays:
        counts += np.bincount(gray.ravel(), minlength=256)
    return counts
