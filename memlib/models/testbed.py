"""Model configs of the testbed: small VAR- and RAR-style models trained on the Fashion-MNIST
subset in ``data/`` (32x32 gray images replicated to RGB, 10 classes) by ``memlib.train``.

Kept apart from the official configs so that the registry lists both without either family
module knowing about the testbed. Both tokenizers downsample 32 -> 8 (three levels), so the
finest token grid is 8x8 in both families:

- ``var-testbed``: six scales 1, 2, 3, 4, 6, 8 (130 tokens), a 512-code multi-scale VQVAE, an
  8-block transformer of width 64 (one head of 64, VAR's head dim) with fc1 width 256.
- ``rar-testbed``: 64 raster tokens, a 512-code MaskGIT-VQGAN, an 8-block transformer of width
  64 (2 heads of 32) with fc1 width 256. Dropout is 0 (the official models use 0.1): the testbed
  trains for minutes, and planted memorization should appear within that budget. The
  position tables get only the 2 extra rows the forward pass uses (upstream keeps 1024/100
  unused rows). ``guidance_scale`` 2.0 with constant schedule is the testbed's sampling default.

Both tokenizers use channel multipliers (1, 1, 2) rather than (1, 2, 2): the 64-channel
convolutions at 16x16 and the 64-channel upsampling convolution at 32x32 doubled their CPU
training time. Depth 8 and six VAR scales give the per-block and per-scale figures room for a pattern (the
paper's models have 16-30 blocks and 10 scales); width 64 is what keeps training both models
within the 90-minute CPU budget (measured on the shared 2-core machine: a width-96 RAR step
took 3 s, which would have made 10 epochs take 52 minutes for RAR alone). Sizes were
fixed before any result was looked at (data/README.md has the measured times); every field
can be overridden through ``memlib.models.registry.get_config(name, **overrides)``.
"""

from memlib.models.rar import RARConfig
from memlib.models.var import VARConfig

CONFIGS: dict = {
    "var-testbed": VARConfig(
        depth=8,
        width=64,
        num_heads=1,
        num_classes=10,
        patch_nums=(1, 2, 3, 4, 6, 8),
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
        hidden_size=64,
        num_layers=8,
        num_heads=2,
        intermediate_size=256,
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
