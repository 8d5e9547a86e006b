"""Tile classifier: a torchvision ResNet trained from scratch behind a scikit-learn interface.

It plays two roles in Cho et al. 2017: the tumour classifier of their Table 1 (trained on
target-style tiles, evaluated on normalized source tiles), and the frozen feature extractor of
the feature-preserving loss (its 512-d global-average-pooled features).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
import torchvision
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn
from tqdm.auto import tqdm

from stainstyle._validation import Tiles, as_tiles
from stainstyle.base import resolve_device
from stainstyle.data.datasets import augment_tile
from stainstyle.sst._torch import build_seeded, own_tensors, to_tensor
from stainstyle.sst.distributed import Ranks, session, share_buffers, wrap

logger = logging.getLogger(__name__)

#: ImageNet channel statistics, the usual input normalization of torchvision ResNets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Architectures offered, all with a 512-d global-average-pooled feature layer.
ARCHITECTURES = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34}


class TileNet(nn.Module):
    """ResNet over RGB tiles in [0, 1], exposing its global-average-pooled features.

    Parameters
    ----------
    arch : {"resnet18", "resnet34"}
        torchvision architecture, built with ``weights=None`` (no download).
    num_classes : int
        Number of output logits.

    Notes
    -----
    The input normalization (ImageNet mean and standard deviation) is part of the module, so
    callers pass images in [0, 1].
    """

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch: expected one of {sorted(ARCHITECTURES)}, got {arch!r}")
        self.resnet = ARCHITECTURES[arch](weights=None, num_classes=num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Set every parameter and buffer as torchvision's ResNet does, drawing from ``generator``.

        Convolutions: Kaiming normal, fan-out, ReLU gain (``std = sqrt(2 / fan_out)``);
        BatchNorm: weight 1, bias 0, fresh running statistics; the final linear layer: PyTorch's
        default, weight and bias uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``; the input
        normalization buffers: the ImageNet statistics.

        Parameters
        ----------
        generator : torch.Generator, optional
            Source of the random draws (on the module's device); None uses torch's global
            generator.

        Raises
        ------
        TypeError
            If a submodule of another kind holds parameters or buffers.
        """
        with torch.no_grad():
            self.mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
            for m in self.resnet.modules():
                if isinstance(m, nn.Conv2d):
                    fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
                    m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                    m.reset_running_stats()
                elif isinstance(m, nn.Linear):
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.uniform_(-bound, bound, generator=generator)
                    if m.bias is not None:
                        m.bias.uniform_(-bound, bound, generator=generator)
                elif own_tensors(m):
                    raise TypeError(
                        f"TileNet.reset_parameters: no initialization for {type(m).__name__}, "
                        f"which holds {own_tensors(m)}"
                    )

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global-average-pooled features and logits, differentiable in ``images``.

        Parameters
        ----------
        images : torch.Tensor of shape (N, 3, H, W), float
            RGB in [0, 1].

        Returns
        -------
        features : torch.Tensor of shape (N, 512)
            Output of ``layer4`` after global average pooling (before the final linear layer).
        logits : torch.Tensor of shape (N, num_classes)
        """
        net = self.resnet
        x = (images - self.mean) / self.std
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        features = torch.flatten(net.avgpool(x), 1)
        return features, net.fc(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes) for RGB ``images`` (N, 3, H, W) in [0, 1]."""
        return self.features_and_logits(images)[1]


class TileClassifier(ClassifierMixin, BaseEstimator):
    """Tumour (or any) tile classifier: a ResNet trained from scratch, scikit-learn style.

    Parameters
    ----------
    arch : {"resnet34", "resnet18"}, default="resnet34"
        Network; ResNet-34 as in Cho et al. 2017, ResNet-18 for fast runs.
    epochs : int, default=10
        Passes over the training tiles.
    batch_size : int, default=32
        Tiles per optimization step and per inference batch.
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-4
        Decoupled weight decay (AdamW).
    crop_size : int or None, default=None
        Train on random square crops of this side; None trains on whole tiles.
    augment : bool, default=True
        Random flips and 90-degree rotations during training.
    batch_transform : callable or None, default=None
        Applied to every training batch after the flips and crops, on the fly (a new draw each
        epoch): takes and returns a float tensor of shape (N, 3, H, W) in [0, 1] on the
        training device, as torchvision transforms do, e.g. a stain augmenter of
        :mod:`stainstyle.augment`. It draws from its own random stream (give it a
        ``random_state`` for reproducible training); it is not applied at inference.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or any torch device string.
    random_state : int, default=0
        Seed of the initialization, the batch order and the augmentations. Each fit draws from
        its own generators (never torch's or NumPy's global one), so the same seed gives the
        same model in any thread and the caller's random state is left alone.
    verbose : bool, default=False
        Show a progress bar with the running loss.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    model_ : TileNet
        The trained network, in eval mode.
    arch_ : str
        Architecture of ``model_``.
    n_classes_ : int
        Number of classes.
    loss_curve_ : list of float
        Mean training loss per epoch.

    See Also
    --------
    stainstyle.sst.StainStyleTransfer : Uses :meth:`features` in its feature-preserving loss.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    >>> clf = TileClassifier(arch="resnet18", epochs=1, device="cpu").fit(X, [0, 1] * 4)
    >>> clf.predict_proba(X).shape, clf.features(X).shape
    ((8, 2), (8, 512))
    """

    _parameter_constraints: dict = {
        "arch": [StrOptions(set(ARCHITECTURES))],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "crop_size": [None, Interval(Integral, 8, None, closed="left")],
        "augment": ["boolean"],
        "batch_transform": [None, callable],
        "device": [str],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        arch: str = "resnet34",
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        crop_size: int | None = None,
        augment: bool = True,
        batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: str = "auto",
        random_state: int = 0,
        verbose: bool = False,
    ):
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.crop_size = crop_size
        self.augment = augment
        self.batch_transform = batch_transform
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _build_modules(self) -> dict[str, nn.Module]:
        """Freshly constructed (untrained) modules keyed by fitted attribute name."""
        return {"model_": TileNet(self.arch_, self.n_classes_)}

    def fit(self, X: Any, y: Any) -> TileClassifier:
        """Train the network from scratch.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3), torch.Tensor, or list of equally sized tiles
            RGB tiles, uint8 or float in [0, 1].
        y : array-like of shape (N,)
            Class labels, at least two distinct.

        Returns
        -------
        self
        """
        self._validate_params()
        images = _stack(as_tiles(X, "X"), "X")
        y = np.asarray(y)
        if y.shape != (len(images),):
            raise ValueError(f"y: expected shape ({len(images)},), got {y.shape}")
        check_classification_targets(y)
        self.classes_, targets = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y: expected at least 2 classes, got {self.classes_.tolist()}")
        self.arch_, self.n_classes_ = self.arch, len(self.classes_)
        device = resolve_device(self.device)
        with session(device) as ranks:
            device = ranks.device(device)
            model = build_seeded(self._build_modules, self.random_state)["model_"].to(device)
            self.loss_curve_ = _train_classifier(
                model, images, targets, self._train_options(), device, ranks
            )
        self.model_ = model
        self.model_.eval()
        return self

    def _train_options(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "crop_size": self.crop_size,
            "augment": self.augment,
            "batch_transform": self.batch_transform,
            "seed": self.random_state,
            "verbose": bool(self.verbose),
        }

    @torch.no_grad()
    def _run(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Features and logits of all tiles, in eval mode."""
        check_is_fitted(self)
        tiles = as_tiles(X, "X")
        device = next(self.model_.parameters()).device
        self.model_.eval()
        features = np.empty((len(tiles), 512), dtype=np.float32)
        logits = np.empty((len(tiles), self.n_classes_), dtype=np.float32)
        for indices, batch in tiles.batches(self.batch_size):
            f, z = self.model_.features_and_logits(to_tensor(batch, device))
            features[indices], logits[indices] = f.float().cpu().numpy(), z.float().cpu().numpy()
        return features, logits

    def features(self, X: Any) -> np.ndarray:
        """Global-average-pooled features, the input of the feature-preserving loss.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of tiles
            RGB tiles, uint8 or float in [0, 1]; any size.

        Returns
        -------
        ndarray of shape (N, 512), dtype float32
        """
        return self._run(X)[0]

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of tiles
            RGB tiles, uint8 or float in [0, 1].

        Returns
        -------
        ndarray of shape (N,) for two classes, else (N, n_classes), dtype float32
            For two classes the logit difference (positive favours ``classes_[1]``), as in
            scikit-learn's binary classifiers; otherwise the logits.
        """
        logits = self._run(X)[1]
        return logits[:, 1] - logits[:, 0] if self.n_classes_ == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of tiles
            RGB tiles, uint8 or float in [0, 1].

        Returns
        -------
        ndarray of shape (N, n_classes), dtype float32
            Softmax of the logits; columns follow ``classes_``.
        """
        return torch.softmax(torch.from_numpy(self._run(X)[1]), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class per tile.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of tiles
            RGB tiles, uint8 or float in [0, 1].

        Returns
        -------
        ndarray of shape (N,)
            Labels from ``classes_``.
        """
        logits = self._run(X)[1]
        return self.classes_[np.argmax(logits, axis=1)]


def _stack(tiles: Tiles, name: str) -> np.ndarray:
    """All tiles as one (N, H, W, 3) uint8 array; they must share one size."""
    shapes = {img.shape for img in tiles.images}
    if len(shapes) != 1:
        raise ValueError(f"{name}: expected tiles of one size, got sizes {sorted(shapes)}")
    return tiles.stack(np.arange(len(tiles)))


def _train_classifier(
    model: TileNet,
    images: np.ndarray,
    targets: np.ndarray,
    options: dict[str, Any],
    device: torch.device,
    ranks: Ranks,
) -> list[float]:
    """Cross-entropy training with AdamW; returns the mean loss per epoch (over all ranks).

    Under ``torchrun`` each rank trains on its shard of the tiles with its own sampler, in
    ``DistributedDataParallel`` (:mod:`stainstyle.sst.distributed`); all ranks end with rank 0's
    network.
    """
    shard = ranks.shard(len(images))
    images, targets = images[shard], targets[shard]
    rng = np.random.default_rng(ranks.seed(options["seed"]))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=options["lr"], weight_decay=options["weight_decay"]
    )
    replica = wrap(model, ranks)
    verbose = options["verbose"] and ranks.is_main
    criterion = nn.CrossEntropyLoss()
    batch_size = options["batch_size"]
    losses = []
    model.train()
    bar = tqdm(range(options["epochs"]), desc="TileClassifier", disable=not verbose)
    for epoch in bar:
        order = rng.permutation(len(images))
        total, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = np.sort(order[start : start + batch_size])
            if len(index) < 2 and len(order) > 1:
                continue  # BatchNorm needs more than one sample per batch in training mode
            flips, crop = options["augment"], options["crop_size"]
            batch = [augment_tile(images[i], rng, flips=flips, crop_size=crop) for i in index]
            x = to_tensor(np.stack(batch)).to(device)
            if options["batch_transform"] is not None:
                x = options["batch_transform"](x)
            t = torch.from_numpy(targets[index]).long().to(device)
            loss = criterion(replica(x), t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(index), seen + len(index)
        losses.append(ranks.mean({"loss": total / max(seen, 1)})["loss"])
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if ranks.is_main:
            logger.info(
                "TileClassifier epoch %d/%d: loss %.4f", epoch + 1, options["epochs"], losses[-1]
            )
    share_buffers(model, ranks)
    return losses
