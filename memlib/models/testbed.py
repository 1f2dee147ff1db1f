"""Model configs of the testbed: small VAR- and RAR-style models trained on the Fashion-MNIST
subset in ``data/`` (32x32 gray images replicated to RGB, 10 classes) by ``memlib.train``.

Kept apart from the official configs so that the registry lists both without either family
module knowing about the testbed. Both tokenizers downsample 32 -> 8 (three levels), so the
finest token grid is 8x8 in both families:

- ``var-testbed``: scales 1, 2, 4, 8 (85 tokens), a 512-code multi-scale VQVAE, a 4-block
  transformer of width 128 (2 heads of 64, as VAR's head dim).
- ``rar-testbed``: 64 raster tokens, a 512-code MaskGIT-VQGAN, a 4-block transformer of width
  128 (4 heads) with fc1 width 512. Dropout is 0 (the official models use 0.1): the testbed
  trains for minutes, and planted memorization should appear within that budget. The
  position tables get only the 2 extra rows the forward pass uses (upstream keeps 1024/100
  unused rows). ``guidance_scale`` 2.0 with constant schedule is the testbed's sampling default.

Both tokenizers use channel multipliers (1, 1, 2) rather than (1, 2, 2): the 64-channel
convolutions at 16x16 and the 64-channel upsampling convolution at 32x32 doubled their CPU
training time. Sizes were chosen for CPU training time (data/README.md has the measured times); every field
can be overridden through ``memlib.models.registry.get_config(name, **overrides)``.
"""

from memlib.models.rar import RARConfig
from memlib.models.var import VARConfig

CONFIGS: dict = {
    "var-testbed": VARConfig(
        depth=4,
        width=128,
        num_heads=2,
        num_classes=10,
        patch_nums=(1, 2, 4, 8),
        vocab_size=512,
        z_channels=16,
        ch=32,
        ch_mult=(1, 1, 2),
        num_res_blocks=1,
        using_sa=False,
        using_mid_sa=False,
        resolution=32,
    ),
    "rar-testbed": RARConfig(
        hidden_size=128,
        num_layers=4,
        num_heads=4,
        intermediate_size=512,
        image_seq_len=64,
        codebook_size=512,
        num_classes=10,
        dropout=0.0,
        attn_dropout=0.0,
        pos_embed_extra_rows=2,
        timestep_extra_rows=2,
        guidance_scale=2.0,
        guidance_scale_pow=0.0,
        temperature=1.0,
        image_size=32,
        tokenizer_channel_mult=(1, 1, 2),
        tokenizer_hidden_channels=32,
        tokenizer_num_res_blocks=1,
        tokenizer_z_channels=32,
    ),
}
