"""The try-on pipeline as two ONNX graphs, its DDIM steps from diffusers, and the page's loop.

:class:`GarDiffPipeline` is cut where a browser can take over:

- :class:`DenoiseGraph`: one guided noise prediction, exactly the body of the pipeline's
  sampling loop: the adapter's garment tokens with and without the garment, the UNet on
  ``[x_t, E(I_w), E(I_a)]`` and the person conditions the model was trained with (the
  DensePose on the latent grid, the skin-primed agnostic latent) for both (a zero ``E(I_w)``
  without the garment), and classifier-free guidance ``eps_u + g (eps_c - eps_u)``. The
  person conditions are inputs, computed outside the graph as the pipeline computes them
  (:meth:`GarDiffPipeline.person_latents`); :func:`denoise_inputs` names a model's inputs.
- :class:`DecodeGraph`: the VAE decoder, the paste-back outside the agnostic mask and the
  image processor's ``[0, 1]`` range.
- :func:`ddim_table`: the scheduler's timesteps and ``alphas_cumprod``, and each DDIM step as
  the two linear maps diffusers' ``scheduler.step`` applies (``x_{t-1}`` and the ``x_0``
  estimate, both ``a x_t + b eps``), measured by calling ``step`` itself, so the spacing and
  the prediction type stay diffusers' and the recipe's.

:func:`onnx_try_on` runs the loop the page runs, in onnxruntime for Python.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler
from torch import nn

from gardiffmini.pipeline import POSE_CHANNELS, GarDiffPipeline, tryon_unet_input


class DenoiseGraph(nn.Module):
    """``eps_u + g (eps_c - eps_u)`` at one timestep, as :class:`GarDiffPipeline` computes it
    for a guidance scale ``g > 1`` (for ``g <= 1`` the pipeline takes ``eps_c``: pass ``g = 1``).
    Its inputs are :func:`denoise_inputs` of the pipeline, in that order: the person
    conditions the UNet reads (``pose_latents``, ``skin_latents``) come last, where it reads
    them, and enter both halves unchanged, as ``E(I_a)`` does."""

    def __init__(self, pipeline: GarDiffPipeline) -> None:
        super().__init__()
        self.unet, self.adapter = pipeline.unet, pipeline.adapter
        self.person_inputs = denoise_inputs(pipeline)[len(DENOISE_INPUTS):]

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor,
                warped_latents: torch.Tensor, agnostic_latents: torch.Tensor,
                clip_embeds: torch.Tensor, warped_mask: torch.Tensor,
                guidance_scale: torch.Tensor, *person_latents: torch.Tensor) -> torch.Tensor:
        if len(person_latents) != len(self.person_inputs):
            raise ValueError(f"DenoiseGraph: this UNet reads the person conditions "
                             f"{self.person_inputs}, got {len(person_latents)} of them")
        person = dict(zip(self.person_inputs, person_latents, strict=True))
        pose, skin = (torch.cat([person[name]] * 2) if name in person else None
                      for name in PERSON_INPUTS)
        tokens = torch.cat([self.adapter(torch.zeros_like(clip_embeds),
                                         torch.zeros_like(warped_latents)),
                            self.adapter(clip_embeds, warped_latents)])
        warped = torch.cat([torch.zeros_like(warped_latents), warped_latents])
        agnostic = torch.cat([agnostic_latents, agnostic_latents])
        kwargs = ({"garment_mask": torch.cat([warped_mask, warped_mask])}
                  if self.adapter.config.use_vae_tokens else None)
        noise = self.unet(tryon_unet_input(torch.cat([latents, latents]), warped, agnostic,
                                           pose, skin),
                          timestep, encoder_hidden_states=tokens,
                          cross_attention_kwargs=kwargs).sample
        unconditional, conditional = noise.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)


class DecodeGraph(nn.Module):
    """``D(z / s)`` pasted into the agnostic image outside its mask, in ``[0, 1]``."""

    def __init__(self, pipeline: GarDiffPipeline) -> None:
        super().__init__()
        self.vae = pipeline.vae
        self.scaling_factor = float(pipeline.vae.config.scaling_factor)

    def forward(self, latents: torch.Tensor, agnostic: torch.Tensor,
                agnostic_mask: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(latents / self.scaling_factor).sample
        images = agnostic_mask * images + (1 - agnostic_mask) * agnostic
        return (images * 0.5 + 0.5).clamp(0, 1)


DENOISE_INPUTS = ("latents", "timestep", "warped_latents", "agnostic_latents", "clip_embeds",
                  "warped_mask", "guidance_scale")
PERSON_INPUTS = ("pose_latents", "skin_latents")  # GarDiffPipeline.person_latents, in order
DECODE_INPUTS = ("latents", "agnostic", "agnostic_mask")


def denoise_inputs(pipeline: GarDiffPipeline) -> tuple[str, ...]:
    """The inputs of ``pipeline``'s :class:`DenoiseGraph`: :data:`DENOISE_INPUTS`, then those
    of :data:`PERSON_INPUTS` its UNet reads (trained with the recipe's ``pose_input``,
    ``skin_input``)."""
    reads = (pipeline.needs_densepose, pipeline.needs_skin_colour)
    return DENOISE_INPUTS + tuple(name for name, read in zip(PERSON_INPUTS, reads, strict=True)
                                  if read)


def example_inputs(pipeline: GarDiffPipeline, generator: torch.Generator | None = None
                   ) -> dict[str, dict[str, torch.Tensor]]:
    """Random inputs of the right shapes for both graphs (batch 1); the denoising graph's
    are those of :func:`denoise_inputs`."""
    g = generator or torch.Generator().manual_seed(0)
    channels = pipeline.vae.config.latent_channels
    height, width = pipeline.unet.config.sample_size
    factor = pipeline.vae_scale_factor

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    mask = (torch.rand(1, 1, height * factor, width * factor, generator=g) > 0.5).float()
    denoise = {
        "latents": randn(1, channels, height, width), "timestep": torch.tensor([500]),
        "warped_latents": randn(1, channels, height, width),
        "agnostic_latents": randn(1, channels, height, width),
        "clip_embeds": randn(1, pipeline.image_encoder.config.projection_dim),
        "warped_mask": mask, "guidance_scale": torch.tensor([2.0]),
        "pose_latents": randn(1, POSE_CHANNELS, height, width).clamp(-1, 1),
        "skin_latents": randn(1, channels, height, width),
    }
    return {
        "denoise": {name: denoise[name] for name in denoise_inputs(pipeline)},
        "decode": {
            "latents": randn(1, channels, height, width),
            "agnostic": randn(1, 3, height * factor, width * factor).clamp(-1, 1),
            "agnostic_mask": mask,
        },
    }


def export_graphs(pipeline: GarDiffPipeline) -> dict[str, bytes]:
    """``{"denoise": onnx bytes, "decode": onnx bytes}``: each graph in one file, float32."""
    inputs = example_inputs(pipeline)
    graphs = {"denoise": (DenoiseGraph(pipeline), denoise_inputs(pipeline), "noise"),
              "decode": (DecodeGraph(pipeline), DECODE_INPUTS, "image")}
    out = {}
    for name, (module, names, output) in graphs.items():
        module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, tuple(inputs[name][k] for k in names), dynamo=True,
                input_names=list(names), output_names=[output], external_data=False,
                verbose=False)
        program.optimize()
        buffer = io.BytesIO()
        program.save(buffer)  # type: ignore[arg-type]
        out[name] = _without_metadata(buffer.getvalue())
    return out


def _without_metadata(data: bytes) -> bytes:
    """The graph without the exporter's per-node metadata (stack traces, module names: the
    build machine's paths, and 40 % of the file)."""
    import onnx

    model = onnx.load_from_string(data)
    for entry in [*model.graph.node, *model.graph.value_info, *model.graph.initializer,
                  *model.graph.input, *model.graph.output]:
        del entry.metadata_props[:]
    del model.metadata_props[:]
    return model.SerializeToString()


def ddim_table(scheduler: DDIMScheduler, steps: int) -> dict:
    """The DDIM sampling of ``steps`` steps as diffusers' ``scheduler`` does it.

    ``{"timesteps", "prev": [[a, b], ...], "x0": [[c, d], ...], "sqrt_alpha_cumprod"}``:
    at step ``i``, ``x_{t-1} = a x_t + b eps`` and ``x0_hat = c x_t + d eps``, ``eps`` being
    the model's output (whatever its prediction type). They are read off ``scheduler.step``
    (eta = 0) with probe inputs, and checked to be linear: a scheduler that clips or
    thresholds its samples is refused.
    """
    scheduler = DDIMScheduler.from_config(scheduler.config)
    scheduler.set_timesteps(steps)
    table = {"steps": steps, "timesteps": [], "prev": [], "x0": [], "sqrt_alpha_cumprod": []}
    for t in scheduler.timesteps:
        probe = torch.tensor([1.0], dtype=torch.float64)
        if not torch.equal(scheduler.scale_model_input(probe, t), probe):
            raise ValueError("the scheduler scales the model input; the page does not")

        def step(output: float, sample: float, t=t) -> tuple[float, float]:
            result = scheduler.step(torch.tensor([output], dtype=torch.float64), t,
                                    torch.tensor([sample], dtype=torch.float64), eta=0.0)
            return result.prev_sample.item(), result.pred_original_sample.item()

        (a, c), (b, d), (check_prev, check_x0) = step(0, 1), step(1, 0), step(-2.5, 3.0)
        if not (math.isclose(check_prev, 3 * a - 2.5 * b, rel_tol=1e-9, abs_tol=1e-9)
                and math.isclose(check_x0, 3 * c - 2.5 * d, rel_tol=1e-9, abs_tol=1e-9)):
            raise ValueError("scheduler.step is not linear in (sample, model output) "
                             "(clip_sample or thresholding?): the page's step cannot follow it")
        table["timesteps"].append(int(t))
        table["prev"].append([a, b])
        table["x0"].append([c, d])
        table["sqrt_alpha_cumprod"].append(math.sqrt(float(scheduler.alphas_cumprod[int(t)])))
    return table


def scheduler_record(scheduler: DDIMScheduler, step_counts: tuple[int, ...]) -> dict:
    """What the page needs of the scheduler: the tables of :func:`ddim_table` for each step
    count offered, ``alphas_cumprod``, the initial noise scale and the configuration."""
    return {
        "tables": {str(n): ddim_table(scheduler, n) for n in step_counts},
        "alphas_cumprod": [float(a) for a in scheduler.alphas_cumprod],
        "init_noise_sigma": float(scheduler.init_noise_sigma),
        "config": {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")},
    }


def sessions(graphs: dict[str, bytes]) -> dict:
    """onnxruntime sessions (CPU, one thread, as the page runs) for the graphs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return {name: onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            for name, data in graphs.items()}


def onnx_try_on(runners: dict, condition: dict[str, np.ndarray], noise: np.ndarray,
                table: dict, guidance_scale: float) -> np.ndarray:
    """The page's loop: ``noise`` -> guided DDIM with ``table`` -> decoded, pasted image
    ``(1, 3, H, W)`` in [0, 1]. ``condition`` holds the arrays of the denoising graph's
    inputs (:func:`denoise_inputs`) but ``latents``, ``timestep`` and ``guidance_scale``, and
    ``agnostic``, ``agnostic_mask``; batch 1, float32."""
    latents = noise.astype(np.float32)
    scale = np.array([max(guidance_scale, 1.0)], dtype=np.float32)
    per_step = ("latents", "timestep", "guidance_scale")
    needed = [i.name for i in runners["denoise"].get_inputs() if i.name not in per_step]
    missing = [k for k in (*needed, "agnostic", "agnostic_mask") if k not in condition]
    if missing:
        raise ValueError(f"onnx_try_on: condition lacks {missing}, which the graphs read "
                         f"(it has {sorted(condition)})")
    fixed = {k: condition[k] for k in needed}
    for t, (a, b) in zip(table["timesteps"], table["prev"], strict=True):
        feed = {"latents": latents, "timestep": np.array([t], dtype=np.int64),
                "guidance_scale": scale, **fixed}
        eps = runners["denoise"].run(None, feed)[0]
        latents = (a * latents + b * eps).astype(np.float32)
    return runners["decode"].run(None, {"latents": latents, "agnostic": condition["agnostic"],
                                        "agnostic_mask": condition["agnostic_mask"]})[0]


def write_graphs(graphs: dict[str, bytes], folder: Path) -> dict[str, Path]:
    """Each graph as ``folder/<name>.onnx``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in graphs.items():
        paths[name] = folder / f"{name}.onnx"
        paths[name].write_bytes(data)
    return paths
