"""Names and sizes of the built-in models and dataset, shared by config, preview and training.

Kept here (import-free) so that validation can count steps per epoch for `builtin:shapes`
without importing the training stack.
"""

BUILTIN_MODEL = "builtin:tiny-sd"
BUILTIN_SDXL_MODEL = "builtin:tiny-sdxl"
BUILTIN_MODELS = (BUILTIN_MODEL, BUILTIN_SDXL_MODEL)
#: block_out_channels of each built-in model's VAE and UNet (lora_sched.train.model builds them with
#: these): the resolution check reads them without building the model.
BUILTIN_BLOCKS = {
    BUILTIN_MODEL: {"vae": (32, 32, 64, 64), "unet": (32, 32, 64, 64)},
    BUILTIN_SDXL_MODEL: {"vae": (32, 32, 64, 64), "unet": (64, 128, 256)},
}
BUILTIN_DATA = "builtin:shapes"
#: Images in the generated `builtin:shapes` set (each with a caption), before repeats.
BUILTIN_SHAPES_SIZE = 32
#: Default square resolution of the built-in model and data (pixels).
BUILTIN_RESOLUTION = 64
