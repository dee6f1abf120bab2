"""diffusers as the oracle for difflow's diffusers import and export (engine/tests/diffusers.rs).

  make DIR      a small UNet2DModel in Ho et al.'s DDPM-CIFAR10 layout (random weights, 32/64
                channels, 16x16) saved as a DDPMPipeline folder DIR/pipeline, and
                DIR/oracle.safetensors: x, t and the model's output eps on them; x_T and the
                image x_0 that diffusers' DDIMScheduler (eta = 0, 10 trailing steps) reaches.
  check DIR     loads DIR/pipeline (a folder difflow exported) with UNet2DModel.from_pretrained
                and DDPMPipeline.from_pretrained, and writes DIR/oracle.safetensors: the
                model's output on DIR/inputs.safetensors (x, t, optional y).

Runs offline (HF_HUB_OFFLINE=1): nothing is downloaded.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

DDIM_STEPS = 10


def small_ddpm_cifar10():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        attention_head_dim=None,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        norm_eps=1e-6,
        norm_num_groups=32,
    )
    # Zero-initialised layers would hide mapping errors: every tensor gets noise.
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return unet.eval()


def make(out):
    unet = small_ddpm_cifar10()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(os.path.join(out, "pipeline"))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 16, 16, generator=g)
    t = torch.tensor([0, 417, 999])
    with torch.no_grad():
        eps = unet(x, t).sample
    ddim = DDIMScheduler.from_config(scheduler.config, timestep_spacing="trailing", set_alpha_to_one=True)
    ddim.set_timesteps(DDIM_STEPS)
    x_t = torch.randn(2, 3, 16, 16, generator=g)
    sample = x_t.clone()
    with torch.no_grad():
        for step in ddim.timesteps:
            out_eps = unet(sample, step).sample
            sample = ddim.step(out_eps, step, sample, eta=0.0, use_clipped_model_output=True).prev_sample
    save_file({"x": x, "t": t, "eps": eps.contiguous(), "x_T": x_t, "x_0": sample.contiguous(),
               "ddim_timesteps": ddim.timesteps.clone()},
              os.path.join(out, "oracle.safetensors"))


def check(out):
    folder = os.path.join(out, "pipeline")
    unet = UNet2DModel.from_pretrained(os.path.join(folder, "unet")).eval()
    pipe = DDPMPipeline.from_pretrained(folder)
    assert isinstance(pipe.scheduler, DDPMScheduler), type(pipe.scheduler)
    inputs = load_file(os.path.join(out, "inputs.safetensors"))
    with torch.no_grad():
        eps = unet(inputs["x"], inputs["t"], class_labels=inputs.get("y")).sample
        # The pipeline runs end to end on the exported folder (two steps, for speed);
        # DDPMPipeline passes no class labels, so only an unconditional net can run in it.
        if unet.config.num_class_embeds is None:
            images = pipe(batch_size=1, num_inference_steps=2, output_type="np").images
            assert images.shape == (1, unet.config.sample_size, unet.config.sample_size, unet.config.in_channels)
    save_file({"eps": eps.contiguous(), "alphas_cumprod": pipe.scheduler.alphas_cumprod.double()},
              os.path.join(out, "oracle.safetensors"))


if __name__ == "__main__":
    {"make": make, "check": check}[sys.argv[1]](sys.argv[2])
