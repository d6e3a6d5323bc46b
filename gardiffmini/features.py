"""Feature networks: behind the spatial loss (chapter 6) and the offline distribution metrics.

A *feature network* for :func:`gardiffmini.losses.spatial_loss` is a module that maps images in
``[0, 1]`` of shape ``(B, 3, H, W)`` to a list of feature maps ``(B, C_k, H_k, W_k)``, the first
one being the image itself, as in DISTS (Ding et al., TPAMI 2020). Two are provided:

- :class:`OrientedFilterBank`, **the offline default**. A fixed, deterministic multi-scale bank
  of complex Gabor filters (4 orientations) on a 3-level Gaussian pyramid, per colour channel.
  Each scale gives the low-passed image, the half-wave rectified cosine Gabor responses
  ``relu(+r)`` and ``relu(-r)``, and the Gabor energies (the magnitude of the complex response).
  Every map is non-negative, like VGG's ReLU maps, so DISTS's ratio of means stays in [0, 1].
  Why this and not a network:

  * DISTS's texture term compares *means* of feature maps and its structure term compares
    *(co)variances*. DISTS was motivated by Portilla and Simoncelli's texture statistics, which
    are exactly such statistics of oriented multi-scale filter responses and their magnitudes.
    Energies (phase invariant) give the texture term something to compare; the rectified
    cosine responses make the structure term sensitive to where edges and stripes lie.
  * No weights and no download: it runs offline at every profile, is identical on every
    machine, and costs a few small convolutions on a CPU.
  * It is not trained on ToyVITON, so the loss does not optimise the feature space that the
    offline metrics (``FID_toy``, ``KID_toy``) measure in: the evaluation stays independent.

- :class:`VGG16Features`, DISTS's own backbone: the layers of torchvision's ``vgg16().features``
  (written out by hand, so torchvision is not needed), with DISTS's L2 pooling in place of max
  pooling. It loads a user's ImageNet checkpoint (``vgg16-397923af.pth``) with :meth:`from_file`;
  with ``dists_weights=True`` it also carries DISTS's learned channel weights alpha and beta,
  which torchmetrics ships inside its package (:func:`dists_channel_weights`), so that
  :func:`~gardiffmini.losses.spatial_loss` is then DISTS itself, with the mask weighting added.
  Randomly initialised VGG features are not a meaningful default, hence the filter bank.

For the distribution metrics, :class:`ToyVitonFeatureNet` is a small CNN trained on ToyVITON to
recognise the worn garment's attributes from the person image; its penultimate layer is the
feature space of ``FID_toy`` and ``KID_toy`` (see :mod:`gardiffmini.metrics`).
"""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class OrientedFilterBank(nn.Module):
    """Fixed multi-scale oriented (complex Gabor) filter bank; the offline default for L_spatial.

    Input: images ``(B, C, H, W)`` in ``[0, 1]``. Output: one map per scale ``s`` of shape
    ``(B, C * (1 + 3 * n_orientations), H / 2**s, W / 2**s)`` holding, per colour channel, the
    low-passed image, the rectified cosine Gabor responses ``relu(r)``, ``relu(-r)`` and the
    Gabor energies ``sqrt(r_cos**2 + r_sin**2)``; all non-negative.
    """

    def __init__(
        self,
        n_scales: int = 3,
        n_orientations: int = 4,
        kernel_size: int = 7,
        sigma: float = 1.5,
        wavelength: float = 4.0,
    ) -> None:
        super().__init__()
        if n_scales < 1 or n_orientations < 1 or kernel_size % 2 == 0:
            raise ValueError(
                "OrientedFilterBank expects n_scales >= 1, n_orientations >= 1 and an odd "
                f"kernel_size; got {n_scales}, {n_orientations}, {kernel_size}"
            )
        self.n_scales = n_scales
        self.n_orientations = n_orientations
        self.kernel_size = kernel_size
        half = kernel_size // 2
        coords = torch.arange(-half, half + 1, dtype=torch.float32)
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        envelope = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
        even, odd = [], []
        for k in range(n_orientations):
            theta = math.pi * k / n_orientations
            phase = 2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / wavelength
            cos_kernel = envelope * torch.cos(phase)
            cos_kernel = cos_kernel - envelope * cos_kernel.sum() / envelope.sum()  # zero DC
            sin_kernel = envelope * torch.sin(phase)
            even.append(cos_kernel / cos_kernel.norm())
            odd.append(sin_kernel / sin_kernel.norm())
        self.register_buffer("gabor", torch.stack(even + odd)[:, None], persistent=False)
        binomial = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        self.register_buffer(
            "blur", (torch.outer(binomial, binomial) / binomial.sum() ** 2)[None, None],
            persistent=False,
        )

    def _downsample(self, images: torch.Tensor) -> torch.Tensor:
        channels = images.shape[1]
        padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(padded, self.blur.repeat(channels, 1, 1, 1), stride=2, groups=channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps of ``images`` (in ``[0, 1]``), one per pyramid scale."""
        smallest = min(images.shape[-2:]) // 2 ** (self.n_scales - 1)
        if images.ndim != 4 or smallest <= self.kernel_size // 2:
            raise ValueError(
                f"OrientedFilterBank expects images (B, C, H, W) with min(H, W) > "
                f"{(self.kernel_size // 2) * 2 ** (self.n_scales - 1)}; got {tuple(images.shape)}"
            )
        batch, channels = images.shape[:2]
        pad = self.kernel_size // 2
        maps, level = [], images
        for scale in range(self.n_scales):
            if scale > 0:
                level = self._downsample(level)
            padded = F.pad(level, (pad, pad, pad, pad), mode="reflect")
            responses = F.conv2d(padded, self.gabor.repeat(channels, 1, 1, 1), groups=channels)
            responses = responses.view(batch, channels, 2, self.n_orientations, *level.shape[-2:])
            even, odd = responses[:, :, 0], responses[:, :, 1]
            # in float32 also under fp16 autocast: there 1e-12 rounds to 0 and the gradient
            # of sqrt at 0 is infinite (every fp16 step of the appearance loss was NaN)
            energy = torch.sqrt(even.float() ** 2 + odd.float() ** 2 + 1e-12)
            rectified = [F.relu(even).flatten(1, 2), F.relu(-even).flatten(1, 2)]
            maps.append(torch.cat([level, *rectified, energy.flatten(1, 2)], dim=1))
        return maps


def default_features() -> OrientedFilterBank:
    """The offline default feature network of L_spatial: an :class:`OrientedFilterBank`."""
    return OrientedFilterBank()


class L2Pooling(nn.Module):
    """DISTS's L2 pooling: ``sqrt(hanning_3x3 * x**2)`` with stride 2 (replaces max pooling)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        window = torch.hann_window(5, periodic=False)[1:-1]
        kernel = torch.outer(window, window)
        kernel = kernel / kernel.sum()
        kernel = kernel[None, None].repeat(channels, 1, 1, 1)
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` by two, in float32 also under fp16 autocast: there ``1e-12`` rounds to 0,
        and the gradient of sqrt at 0 is infinite where a feature map is 0 (after a ReLU)."""
        with torch.autocast(x.device.type, enabled=False):
            out = F.conv2d(x.float() ** 2, self.kernel, stride=2, padding=1, groups=x.shape[1])
            return torch.sqrt(out + 1e-12)


# torchvision's vgg16().features: conv widths, "M" where a max pool sits (indices 4, 9, 16, 23, 30)
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class VGG16Features(nn.Module):
    """VGG16 as in DISTS: outputs ``[image, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]``.

    Layer indices equal torchvision's ``vgg16().features`` (convolutions at 0, 2, 5, ...), so its
    state dict loads unchanged; pooling is DISTS's :class:`L2Pooling` (no parameters). Input:
    images in ``[0, 1]``; ImageNet normalisation is applied inside. Frozen after construction.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(L2Pooling(channels))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.stage_ends = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("alpha", None, persistent=False)  # DISTS weights, see from_file
        self.register_buffer("beta", None, persistent=False)
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path, dists_weights: bool = False) -> VGG16Features:
        """Load torchvision's ImageNet VGG16 checkpoint (e.g. ``vgg16-397923af.pth``).

        Accepts the full model's state dict (keys ``features.N.*``, the classifier is ignored)
        or the state dict of ``vgg16().features`` alone (keys ``N.*``). ``dists_weights``:
        also attach DISTS's learned ``alpha``/``beta`` (:func:`dists_channel_weights`).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG16 weights file {path} not found; expected torchvision's "
                                    "ImageNet checkpoint, e.g. vgg16-397923af.pth")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(key.startswith("features.") for key in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        model = cls()
        try:
            model.features.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{path} is not a torchvision VGG16 state dict: {error}") from error
        if dists_weights:
            model.alpha, model.beta = dists_channel_weights()
        return model

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The DISTS stages of ``images`` (in ``[0, 1]``)."""
        h = (images - self.mean) / self.std
        maps = [images]
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in self.stage_ends:
                maps.append(h)
        return maps


def dists_channel_weights() -> tuple[torch.Tensor, torch.Tensor]:
    """DISTS's learned ``(alpha, beta)``, 1475 each (the channels of :class:`VGG16Features`).

    Read from the copy that torchmetrics ships (``functional/image/dists_models/weights.pt``);
    nothing is downloaded.
    """
    path = importlib.resources.files("torchmetrics.functional.image") / "dists_models/weights.pt"
    if not path.is_file():
        raise FileNotFoundError(f"DISTS weights not found at {path}; expected a torchmetrics "
                                "release that ships DISTS")
    with importlib.resources.as_file(path) as local:
        weights = torch.load(local, map_location="cpu", weights_only=True)
    return weights["alpha"].flatten(), weights["beta"].flatten()


class ToyVitonFeatureNet(nn.Module):
    """A small CNN that recognises the worn garment's attributes from the PERSON image.

    ``attribute_classes`` maps an attribute name (e.g. ``"pattern"``, ``"colour"``,
    ``"category"``) to its number of classes. Input: person images ``(B, 3, H, W)`` in ``[0, 1]``,
    any size. :meth:`features` is the penultimate layer (the space of ``FID_toy``/``KID_toy``),
    :meth:`forward` the logits per attribute, :meth:`predict` the class indices.
    """

    def __init__(self, attribute_classes: dict[str, int], width: int = 32,
                 feature_dim: int = 64) -> None:
        super().__init__()
        if not attribute_classes or min(attribute_classes.values()) < 2:
            raise ValueError("attribute_classes must name at least one attribute with >= 2 "
                             f"classes; got {attribute_classes}")
        self.attribute_classes = dict(attribute_classes)
        self.width = width
        self.feature_dim = feature_dim
        widths = (width, 2 * width, 4 * width, 4 * width)
        blocks: list[nn.Module] = []
        channels = 3
        for out in widths:
            blocks += [nn.Conv2d(channels, out, 3, stride=2, padding=1),
                       nn.GroupNorm(min(8, out), out), nn.SiLU()]
            channels = out
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict(
            {name: nn.Linear(feature_dim, n) for name, n in self.attribute_classes.items()}
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, feature_dim)`` of images in ``[0, 1]``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ToyVitonFeatureNet expects images (B, 3, H, W) in [0, 1]; "
                             f"got shape {tuple(images.shape)}")
        return self.body(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``(B, n_classes)`` per attribute."""
        hidden = self.features(images)
        return {name: head(hidden) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted class index ``(B,)`` per attribute."""
        return {name: logits.argmax(dim=1) for name, logits in self(images).items()}


def _check_labels(images: torch.Tensor, labels: dict[str, torch.Tensor]) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) in [0, 1]; got {tuple(images.shape)}")
    if not labels:
        raise ValueError("labels must name at least one attribute")
    for name, values in labels.items():
        if values.shape != (images.shape[0],) or values.dtype != torch.long:
            raise ValueError(f"labels[{name!r}] must be a LongTensor of shape "
                             f"({images.shape[0]},); got {values.dtype} {tuple(values.shape)}")


def train_feature_net(
    images: torch.Tensor,
    labels: dict[str, torch.Tensor],
    steps: int,
    batch_size: int,
    seed: int,
    attribute_classes: dict[str, int] | None = None,
    learning_rate: float = 2e-3,
    width: int = 32,
    feature_dim: int = 64,
) -> ToyVitonFeatureNet:
    """Train a :class:`ToyVitonFeatureNet` (sum of cross-entropies over attributes, Adam).

    Deterministic: the initial weights and every batch follow from ``seed`` alone (the global
    random state is left untouched). ``attribute_classes`` defaults to ``max(label) + 1``.
    """
    _check_labels(images, labels)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got {steps}, {batch_size}")
    classes = attribute_classes or {name: int(v.max()) + 1 for name, v in labels.items()}
    if set(classes) != set(labels):
        raise ValueError(f"attribute_classes names {sorted(classes)} but labels name "
                         f"{sorted(labels)}; expected the same attributes")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ToyVitonFeatureNet(classes, width=width, feature_dim=feature_dim)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        index = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        logits = net(images[index])
        loss = sum(F.cross_entropy(logits[name], labels[name][index]) for name in classes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()
