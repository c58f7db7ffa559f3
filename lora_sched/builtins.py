"""Names and sizes of the built-in model and dataset, shared by config, preview and training.

Kept here (import-free) so that validation can count steps per epoch for `builtin:shapes`
without importing the training stack.
"""

BUILTIN_MODEL = "builtin:tiny-sd"
BUILTIN_DATA = "builtin:shapes"
#: Images in the generated `builtin:shapes` set (each with a caption), before repeats.
BUILTIN_SHAPES_SIZE = 32
#: Default square resolution of the built-in model and data (pixels).
BUILTIN_RESOLUTION = 64
