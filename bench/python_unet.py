"""difflow's UNet written in Python, as a `python` model: `DifflowUNet(**unet_config)`.

The network is `unet_reference.UNet` (same architecture, parameter names and shapes as
difflow's built-in `unet`, so a weights file fits either), built from the keys of a
difflow `unet` model config. `bench/python_unet_speed.py` times a training step of it in
`difflow-worker bench --python bench/python_unet.py:DifflowUNet` against the built-in UNet.
"""

from unet_reference import UNet


class DifflowUNet(UNet):
    def __init__(self, in_ch=3, size=32, channels=128, mults=(1, 2, 2, 2), res_blocks=2, attention=(16,), heads=1,
                 dropout=0.1, scale_shift=False, classes=0, learn_sigma=False, **layout):
        # The layout keys (diffusers' variants) keep their improved-diffusion values here.
        super().__init__(in_ch=in_ch, size=size, channels=channels, mults=tuple(mults), res_blocks=res_blocks,
                         attention=tuple(attention), heads=heads, dropout=dropout, scale_shift=scale_shift,
                         classes=classes, learn_sigma=learn_sigma)
