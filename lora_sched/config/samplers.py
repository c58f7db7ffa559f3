"""sd-scripts' sample_sampler names (no imports: the key table, loaded on every `validate`, reads them)."""

#: sd-scripts' sample_sampler names (its --sample_sampler choices), "ddim" its default.
SAMPLERS = (
    "ddim",
    "pndm",
    "lms",
    "euler",
    "euler_a",
    "heun",
    "dpm_2",
    "dpm_2_a",
    "dpmsolver",
    "dpmsolver++",
    "dpmsingle",
    "k_lms",
    "k_euler",
    "k_euler_a",
    "k_dpm_2",
    "k_dpm_2_a",
)
DEFAULT_SAMPLER = "ddim"
