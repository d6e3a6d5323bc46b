"""GarDiffPipeline: try-on by DDIM sampling with classifier-free guidance, a diffusers pipeline.

Given the garment-agnostic person ``I_a``, the warped garment ``I_w`` with its mask ``m_w`` and
the in-shop garment ``I_c``, the pipeline

1. encodes ``E(I_w)`` and ``E(I_a)`` with the VAE and ``I_c`` with the CLIP image encoder;
2. turns them into garment tokens with the adapter (``[f_clip, f_vae]``, or ``f_clip`` for Base);
3. runs DDIM from noise, the UNet seeing ``[x_t, E(I_w), E(I_a)]`` and the tokens, ``m_w``
   masking the garment attention; classifier-free guidance against the prediction without the
   garment: the adapter's tokens of a zero CLIP embedding and a zero latent, and a zero
   ``E(I_w)`` in the UNet's input (training drops all three together with p = 0.05). A UNet
   trained with the recipe's ``pose_input`` also sees the person's DensePose
   (:func:`pose_latent`), in both halves, as it sees ``E(I_a)``; one trained with its
   ``skin_input`` sees ``E`` of the agnostic image painted in the person's skin colour
   (:mod:`gardiffmini.skin`) the same way;
4. decodes the latent into an image in [0, 1].

The garment processors' weights live in the UNet's state dict;
:meth:`GarDiffPipeline.from_pretrained` installs the processors from the adapter's config
before loading them.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file
from transformers import CLIPVisionModelWithProjection

from gardiffmini.data.warp import paste_warped_garment
from gardiffmini.models.adapter import GarmentAdapter
from gardiffmini.models.attention import garment_processors
from gardiffmini.models.encoders import clip_image_embeds
from gardiffmini.models.memory import own_memory
from gardiffmini.models.unet import N_CONDITION_LATENTS, add_input_channels, move_input_weights
from gardiffmini.models.vae import load_pretrained_vae
from gardiffmini.skin import skin_primed_agnostic

if TYPE_CHECKING:
    from gardiffmini.objective import Recipe
    from gardiffmini.profiles import Profile


def encode_latents(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """``E(I)``: the VAE posterior mean of ``images`` in [-1, 1], times the scaling factor."""
    return vae.encode(images).latent_dist.mean * vae.config.scaling_factor


POSE_CHANNELS = 3  # DensePose's I, U, V rendered as colour


def pose_latent(densepose: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The DensePose condition on the latent grid: ``densepose`` (B, 3, H, W) in [-1, 1]
    area-averaged to ``size`` (h, w), so (B, 3, h, w) in [-1, 1], float32. Each latent cell
    gets the mean colour of the pixels it covers (a mix of parts at a part's edge)."""
    if densepose.ndim != 4 or densepose.shape[1] != POSE_CHANNELS:
        raise ValueError(f"pose_latent: densepose must be (B, {POSE_CHANNELS}, H, W), got "
                         f"{tuple(densepose.shape)}")
    return F.interpolate(densepose.float(), size=tuple(size), mode="area")


def tryon_unet_input(
    noisy_latents: torch.Tensor, warped_latents: torch.Tensor, agnostic_latents: torch.Tensor,
    pose: torch.Tensor | None = None, skin: torch.Tensor | None = None,
) -> torch.Tensor:
    """The UNet's 12-channel input ``[x_t, E(I_w), E(I_a)]`` (GARDIFF.md, "UNet input"), then
    ``pose`` (:func:`pose_latent`; the recipe's ``pose_input``) and ``skin`` (``E`` of
    :func:`~gardiffmini.skin.skin_primed_agnostic`; its ``skin_input``) where given."""
    extras = [extra.to(noisy_latents) for extra in (pose, skin) if extra is not None]
    return torch.cat([noisy_latents, warped_latents, agnostic_latents, *extras], dim=1)


def person_inputs(in_channels: int, latent_channels: int) -> tuple[bool, bool]:
    """Which person conditions a UNet of ``in_channels`` inputs reads beyond ``[x_t, E(I_w),
    E(I_a)]``: ``(pose, skin)``, the :data:`POSE_CHANNELS` of :func:`pose_latent` and the
    ``latent_channels`` of the skin-primed agnostic latent. Told apart by their count, which
    is why the recipe's ``skin_input`` needs ``latent_channels != POSE_CHANNELS``."""
    extra = in_channels - N_CONDITION_LATENTS * latent_channels
    for pose in (False, True):
        for skin in (False, True):
            if extra == POSE_CHANNELS * pose + latent_channels * skin:
                return pose, skin
    raise ValueError(f"a UNet of {in_channels} input channels reads no known conditions: "
                     f"expected {N_CONDITION_LATENTS} x {latent_channels} latent channels, "
                     f"plus {POSE_CHANNELS} (DensePose) and/or {latent_channels} (skin)")


def extra_input_channels(recipe: Recipe, profile: Profile) -> int:
    """The UNet inputs ``recipe`` adds to ``[x_t, E(I_w), E(I_a)]``: the DensePose's
    :data:`~gardiffmini.pipeline.POSE_CHANNELS` (``pose_input``) and the skin-primed agnostic
    latent's ``profile.latent_channels`` (``skin_input``), which must differ so that a saved
    UNet says which it reads (:func:`~gardiffmini.pipeline.person_inputs`)."""
    if recipe.skin_input and profile.latent_channels == POSE_CHANNELS:
        raise ValueError(f"skin_input needs latent_channels != {POSE_CHANNELS} (the DensePose "
                         f"channels), or a UNet's inputs are ambiguous; profile "
                         f"{profile.name!r} has {profile.latent_channels}")
    return POSE_CHANNELS * recipe.pose_input + profile.latent_channels * recipe.skin_input


def add_person_inputs(unet: UNet2DConditionModel, recipe: Recipe,
                      profile: Profile) -> UNet2DConditionModel:
    """Give ``unet`` the inputs of ``recipe``'s person conditions (:func:`extra_input_channels`),
    in place: appended at zero, last (:func:`~gardiffmini.models.unet.add_input_channels`), so
    that it computes what it did; with ``recipe.skin_init == "agnostic"`` the skin-primed
    latent then takes over ``E(I_a)``'s weights and ``E(I_a)``'s start at zero
    (:func:`~gardiffmini.models.unet.move_input_weights`): the UNet reads the skin-primed
    agnostic image as it read the grey one."""
    extra = extra_input_channels(recipe, profile)
    if extra:
        add_input_channels(unet, extra)
    if recipe.skin_input and recipe.skin_init == "agnostic":
        c = profile.latent_channels
        move_input_weights(unet, source=2 * c, target=unet.config.in_channels - c, count=c)
    return unet


def _check_images(name: str, images: torch.Tensor, channels: int, batch: int | None = None,
                  size: tuple[int, int] | None = None) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != channels:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (B, {channels}, H, W), got {shape}")
    if batch is not None and images.shape[0] != batch:
        raise ValueError(f"{name} has batch {images.shape[0]}, expected {batch} like agnostic")
    if size is not None and tuple(images.shape[-2:]) != size:
        raise ValueError(f"{name} has size {tuple(images.shape[-2:])}, "
                         f"expected {size} like agnostic")


VALUE_TOLERANCE = 1e-3  # resampling overshoot tolerated at the ends of a value range


def _check_values(name: str, images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``images`` as float32 after checking that it is floating, finite and in [low, high]."""
    if not images.is_floating_point():
        raise ValueError(f"{name} has dtype {images.dtype}: expected float values in "
                         f"[{low:g}, {high:g}]")
    images = images.float()
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} holds NaN or infinite values: expected finite values in "
                         f"[{low:g}, {high:g}]")
    smallest, largest = images.min().item(), images.max().item()
    if smallest < low - VALUE_TOLERANCE or largest > high + VALUE_TOLERANCE:
        hint = " (pixels in [0, 255]? use x / 127.5 - 1)" if low == -1 else \
            " (a mask of 0 and 255? divide it by 255)"
        raise ValueError(f"{name} has values in [{smallest:.4g}, {largest:.4g}]: expected "
                         f"[{low:g}, {high:g}]{hint}")
    return images


def _check_guidance_scale(guidance_scale: float) -> None:
    if (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float))
            or not math.isfinite(guidance_scale) or guidance_scale < 0):
        raise ValueError(f"guidance_scale must be a finite number >= 0 (1 or less: no "
                         f"guidance), got {guidance_scale!r}")


class GarDiffPipeline(DiffusionPipeline):
    """Virtual try-on with GarDiff.

    Components: ``unet``, ``vae``, ``image_encoder``, ``adapter``, ``scheduler`` (DDIM).
    ``paste_warp`` (saved in the pipeline's config): the UNet was trained with the recipe's
    ``paste_warp``, so its skin-primed agnostic latent carries the warped garment pasted in.
    """

    model_cpu_offload_seq = "image_encoder->adapter->unet->vae"

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        adapter: GarmentAdapter,
        scheduler: DDIMScheduler,
        paste_warp: bool = False,
    ) -> None:
        super().__init__()
        installed = garment_processors(unet)
        if adapter.config.use_vae_tokens != bool(installed):
            raise ValueError(
                f"adapter.use_vae_tokens={adapter.config.use_vae_tokens} but the UNet has "
                f"{len(installed)} garment processors; call adapter.install(unet) for the "
                "garment-focused adapter, or use a UNet without it for Base"
            )
        settings = adapter.attention_settings
        for name, processor in installed.items():
            found = {key: getattr(processor, key) for key in settings}
            if found != settings:
                raise ValueError(f"{name} was installed with {found}, the adapter's config says "
                                 f"{settings}")
        if paste_warp and not person_inputs(unet.config.in_channels, unet.config.out_channels)[1]:
            raise ValueError("paste_warp pastes the warp into the skin-primed agnostic image, "
                             f"but this UNet has no skin channels (in_channels="
                             f"{unet.config.in_channels})")
        self.register_modules(unet=unet, vae=vae, image_encoder=image_encoder, adapter=adapter,
                              scheduler=scheduler)
        self.register_to_config(paste_warp=paste_warp)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def needs_densepose(self) -> bool:
        """Whether the UNet reads the DensePose channels (trained with the recipe's
        ``pose_input``): its input has :data:`POSE_CHANNELS` more than ``[x_t, E(I_w),
        E(I_a)]``."""
        return person_inputs(self.unet.config.in_channels, self.unet.config.out_channels)[0]

    @property
    def needs_skin_colour(self) -> bool:
        """Whether the UNet reads the skin-primed agnostic latent (trained with the recipe's
        ``skin_input``, :mod:`gardiffmini.skin`)."""
        return person_inputs(self.unet.config.in_channels, self.unet.config.out_channels)[1]

    @torch.no_grad()
    def person_latents(
        self, agnostic: torch.Tensor, agnostic_mask: torch.Tensor | None = None,
        densepose: torch.Tensor | None = None, skin_colour: torch.Tensor | None = None,
        warped_cloth: torch.Tensor | None = None, warped_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The person conditions the UNet reads after ``[x_t, E(I_w), E(I_a)]``, as
        :func:`tryon_unet_input` takes them: ``pose``, the DensePose on the latent grid
        (:func:`pose_latent`), and ``skin``, ``E`` of the agnostic image painted in
        ``skin_colour`` inside ``agnostic_mask``
        (:func:`~gardiffmini.skin.skin_primed_agnostic`), with ``warped_cloth`` pasted into it
        inside ``warped_mask`` where the pipeline's ``paste_warp`` says so (then both are
        required); ``None`` for each not given. On the UNet's device and in its dtype; images
        as :meth:`__call__` takes them."""
        device, dtype = self._execution_device, self.unet.dtype
        size = tuple(s // self.vae_scale_factor for s in agnostic.shape[-2:])
        pose = None if densepose is None else pose_latent(densepose, size).to(device, dtype)
        skin = None
        if skin_colour is not None:
            primed = skin_primed_agnostic(agnostic, agnostic_mask, skin_colour)
            if self.config.paste_warp:
                if warped_cloth is None or warped_mask is None:
                    raise ValueError("this pipeline's UNet was trained with paste_warp: its "
                                     "skin latent needs warped_cloth and warped_mask")
                primed = paste_warped_garment(primed, warped_cloth.to(primed),
                                              warped_mask.to(primed))
            skin = encode_latents(self.vae, primed.to(device, self.vae.dtype)).to(dtype)
        return pose, skin

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike,
                        **kwargs) -> GarDiffPipeline:
        """Load a saved pipeline; the garment processors and their weights come back too, and
        a :class:`~gardiffmini.models.vae.ShortcutAutoencoderKL` comes back as one. Every
        component's weights are copied into memory of their own
        (:func:`~gardiffmini.models.memory.own_memory`), so the loaded pipeline computes
        exactly what the saved one did."""
        folder = str(pretrained_model_name_or_path)
        if not os.path.isdir(folder):
            folder = cls.download(folder, **{k: v for k, v in kwargs.items()
                                             if k in ("cache_dir", "revision", "token")})
        pretrained_model_name_or_path = folder
        if "vae" not in kwargs:
            kwargs["vae"] = load_pretrained_vae(folder, subfolder="vae")
        if "unet" not in kwargs:
            adapter = kwargs.get("adapter") or GarmentAdapter.from_pretrained(folder,
                                                                                subfolder="adapter")
            unet = UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(folder, subfolder="unet"))
            adapter.install(unet)
            unet.load_state_dict(load_file(os.path.join(folder, "unet", SAFETENSORS_WEIGHTS_NAME)))
            if kwargs.get("torch_dtype") is not None:
                unet.to(kwargs["torch_dtype"])
            kwargs.update(unet=unet, adapter=adapter)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                own_memory(component)
        return pipe

    @torch.no_grad()
    def __call__(
        self,
        agnostic: torch.Tensor,
        warped_cloth: torch.Tensor,
        warped_mask: torch.Tensor,
        cloth: torch.Tensor,
        agnostic_mask: torch.Tensor | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        densepose: torch.Tensor | None = None,
        skin_colour: torch.Tensor | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Dress the person of ``agnostic`` in ``cloth``.

        Images are (B, 3, H, W) in [-1, 1], masks (B, 1, H, W) in [0, 1]. With ``agnostic_mask``
        the result keeps the agnostic image's pixels outside that mask (paste-back). Returns
        images in [0, 1]: a tensor (``output_type="pt"``) or PIL images (``"pil"``).
        ``densepose``, the person's DensePose image (B, 3, H, W) in [-1, 1], is required by a
        UNet trained with the recipe's ``pose_input`` (:attr:`needs_densepose`) and refused by
        any other. ``skin_colour``, the person's skin colour (B, 3) in [-1, 1]
        (:func:`~gardiffmini.skin.face_skin_colour`), is required, with ``agnostic_mask``, by
        a UNet trained with the recipe's ``skin_input`` (:attr:`needs_skin_colour`) and
        refused by any other.
        """
        _check_images("agnostic", agnostic, 3)
        batch, size = agnostic.shape[0], tuple(agnostic.shape[-2:])
        if batch == 0:
            raise ValueError("agnostic has batch 0: expected at least one person")
        _check_images("warped_cloth", warped_cloth, 3, batch, size)
        _check_images("warped_mask", warped_mask, 1, batch, size)
        _check_images("cloth", cloth, 3, batch)
        if agnostic_mask is not None:
            _check_images("agnostic_mask", agnostic_mask, 1, batch, size)
            agnostic_mask = _check_values("agnostic_mask", agnostic_mask, 0.0, 1.0)
        agnostic = _check_values("agnostic", agnostic, -1.0, 1.0)
        warped_cloth = _check_values("warped_cloth", warped_cloth, -1.0, 1.0)
        warped_mask = _check_values("warped_mask", warped_mask, 0.0, 1.0)
        cloth = _check_values("cloth", cloth, -1.0, 1.0)
        if self.needs_densepose != (densepose is not None):
            raise ValueError(
                "densepose is missing: this UNet was trained with pose_input and reads the "
                "person's DensePose (B, 3, H, W) in [-1, 1]" if self.needs_densepose else
                f"densepose was given, but this UNet has no pose channels (in_channels="
                f"{self.unet.config.in_channels}); leave it out")
        if densepose is not None:
            _check_images("densepose", densepose, POSE_CHANNELS, batch, size)
            densepose = _check_values("densepose", densepose, -1.0, 1.0)
        if self.needs_skin_colour != (skin_colour is not None):
            raise ValueError(
                "skin_colour is missing: this UNet was trained with skin_input and reads the "
                "person's skin colour (B, 3) in [-1, 1] (gardiffmini.skin.face_skin_colour)"
                if self.needs_skin_colour else
                f"skin_colour was given, but this UNet has no skin channels (in_channels="
                f"{self.unet.config.in_channels}); leave it out")
        if skin_colour is not None:
            if agnostic_mask is None:
                raise ValueError("skin_colour needs agnostic_mask: the skin colour is painted "
                                 "inside it")
            if not isinstance(skin_colour, torch.Tensor) or skin_colour.shape != (batch, 3):
                raise ValueError(f"skin_colour must be a tensor of shape ({batch}, 3), got "
                                 f"{getattr(skin_colour, 'shape', type(skin_colour).__name__)}")
            skin_colour = _check_values("skin_colour", skin_colour, -1.0, 1.0)
        _check_guidance_scale(guidance_scale)
        if any(s % self.vae_scale_factor for s in size):
            raise ValueError(f"agnostic: image size {size} must be a multiple of the VAE's "
                             f"factor {self.vae_scale_factor}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if output_type not in ("pt", "pil", "np"):
            raise ValueError(f"output_type must be 'pt', 'pil' or 'np', got {output_type!r}")

        device, dtype = self._execution_device, self.unet.dtype
        vae_dtype = self.vae.dtype
        warped_latents = encode_latents(self.vae, warped_cloth.to(device, vae_dtype)).to(dtype)
        agnostic_latents = encode_latents(self.vae, agnostic.to(device, vae_dtype)).to(dtype)
        clip_embeds = clip_image_embeds(self.image_encoder, cloth.to(device))
        clip_embeds = clip_embeds.to(device, self.adapter.dtype)
        warped_for_adapter = warped_latents.to(self.adapter.dtype)
        tokens = self.adapter(clip_embeds, warped_for_adapter)
        mask = warped_mask.to(device, dtype)
        guided = guidance_scale > 1.0
        if guided:
            unconditional = self.adapter(torch.zeros_like(clip_embeds),
                                         torch.zeros_like(warped_for_adapter))
            tokens = torch.cat([unconditional, tokens])
            mask = torch.cat([mask, mask])
        tokens = tokens.to(dtype)
        if guided:  # the unconditional branch has no garment: training drops E(I_w) too
            warped_latents = torch.cat([torch.zeros_like(warped_latents), warped_latents])
            agnostic_latents = torch.cat([agnostic_latents, agnostic_latents])
        pose, skin = self.person_latents(agnostic, agnostic_mask, densepose, skin_colour,
                                         warped_cloth, warped_mask)
        if guided:  # person conditions, like E(I_a): the same in both halves
            pose, skin = (None if c is None else torch.cat([c, c]) for c in (pose, skin))
        attention_kwargs = {"garment_mask": mask} if self.adapter.config.use_vae_tokens else None

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = randn_tensor((batch, *agnostic_latents.shape[1:]), generator=generator,
                               device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise = self.unet(tryon_unet_input(model_input, warped_latents, agnostic_latents,
                                               pose, skin), t,
                              encoder_hidden_states=tokens,
                              cross_attention_kwargs=attention_kwargs).sample
            if guided:
                noise_unconditional, noise_conditional = noise.chunk(2)
                noise = noise_unconditional + guidance_scale * (noise_conditional
                                                                - noise_unconditional)
            latents = self.scheduler.step(noise, t, latents, generator=generator).prev_sample

        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        if agnostic_mask is not None:
            keep = agnostic_mask.to(images)
            images = keep * images + (1 - keep) * agnostic.to(images)
        images = self.image_processor.postprocess(images.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
