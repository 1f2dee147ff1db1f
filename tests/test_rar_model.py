"""RAR and its MaskGIT-VQGAN tokenizer: golden values from the official code, official
checkpoint layouts, KV-cache equivalence, prefix-forced greedy decoding and a non-golden size.

Golden files (tests/data/golden) were produced by bytedance/1d-tokenizer on CPU at tiny
configs (see the project's architecture notes, section 5.3/5.4).
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from memlib.models.generator import PositionGroup
from memlib.models.loading import load_strict
from memlib.models.maskgit_vqgan import MaskGITVQGAN, VQGANConfig
from memlib.models.rar import CONFIGS, RARConfig, RARGenerator, RARTransformer, ar_loss

DATA = Path(__file__).parent / "data"
ATOL = 1e-4

# The golden transformer: hidden 64, 2 layers, 4 heads, fc1 256, 64 tokens, codebook 1024.
# Its tokenizer fields only have to give 8 x 8 codes; the golden file has no tokenizer for it.
GOLDEN_RAR = RARConfig(
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    intermediate_size=256,
    image_seq_len=64,
    image_size=16,
    tokenizer_channel_mult=(1, 2),
    tokenizer_hidden_channels=32,
    tokenizer_z_channels=32,
)
GOLDEN_TOKENIZER = VQGANConfig(
    channel_mult=(1, 2), hidden_channels=32, num_res_blocks=2, z_channels=32, codebook_size=64, resolution=32
)
# A size no golden file uses: 8 x 8 tokens, codebook 64, 10 classes.
SMALL = RARConfig(
    hidden_size=48,
    num_layers=3,
    num_heads=4,
    intermediate_size=96,
    image_seq_len=64,
    codebook_size=64,
    num_classes=10,
    pos_embed_extra_rows=8,
    timestep_extra_rows=4,
    guidance_scale=3.0,
    guidance_scale_pow=1.0,
    image_size=32,
    tokenizer_channel_mult=(1, 2, 2),
    tokenizer_hidden_channels=32,
    tokenizer_z_channels=16,
)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random weights (like the golden files') so that no block is near the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=gen)
            p.copy_(1 + noise if "norm" in name and name.endswith("weight") else noise)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Many tiny ops: one thread is faster, and far faster on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def golden():
    return torch.load(DATA / "golden" / "rar_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def golden_generator(golden):
    """The golden transformer loaded into a meta-built generator (exercises after_load)."""
    generator = RARGenerator(GOLDEN_RAR, device="meta")
    load_strict(generator.transformer, golden["state_dict"], source="rar_tiny.pt", config=GOLDEN_RAR)
    _fill_tokenizer(generator)
    generator.after_load()
    return generator.eval()


def _fill_tokenizer(generator: RARGenerator) -> None:
    """Give the meta-built tokenizer freshly initialized weights (this golden has none)."""
    real = MaskGITVQGAN(generator.tokenizer.config)
    load_strict(generator.tokenizer, real.state_dict(), source="fresh init", config=GOLDEN_RAR)


@pytest.fixture(scope="module")
def small_generator():
    torch.manual_seed(0)
    generator = RARGenerator(SMALL)
    _randomize(generator.transformer, seed=1)
    return generator.eval()


# ---- tokenizer -----------------------------------------------------------------------------------
def test_tokenizer_reproduces_golden():
    golden = torch.load(DATA / "golden" / "rar_tiny_tokenizer.pt", weights_only=True)
    tokenizer = MaskGITVQGAN(GOLDEN_TOKENIZER)
    tokenizer.load_state_dict(golden["state_dict"], strict=True)
    tokenizer.eval()
    with torch.no_grad():
        z = tokenizer.encoder(golden["img_01"])
        codes = tokenizer.encode(golden["img_01"])
        z_q = tokenizer.quantize.lookup(codes, GOLDEN_TOKENIZER.latent_size)
        raw = tokenizer.decode_raw(codes)
        images = tokenizer.decode(codes)
    torch.testing.assert_close(z, golden["encoder_out"], atol=ATOL, rtol=0)
    assert codes.dtype == torch.int64 and torch.equal(codes, golden["codes_B_hw"])
    torch.testing.assert_close(z_q, golden["z_q"], atol=ATOL, rtol=0)
    torch.testing.assert_close(raw, golden["decoder_out_raw"], atol=ATOL, rtol=0)
    torch.testing.assert_close(images, golden["decode_clamped_01"], atol=ATOL, rtol=0)
    assert images.min() >= 0 and images.max() <= 1 and (raw < 0).any()


def test_tokenizer_training_forward_reaches_encoder():
    torch.manual_seed(0)
    config = VQGANConfig(
        channel_mult=(1, 2), hidden_channels=32, num_res_blocks=1, z_channels=8, codebook_size=16, resolution=16
    )
    tokenizer = MaskGITVQGAN(config).train()
    images = torch.rand(2, 3, 16, 16)
    recon, vq_loss = tokenizer(images)
    assert recon.shape == images.shape and vq_loss.ndim == 0 and torch.isfinite(vq_loss)
    loss = (recon - images).abs().mean() + vq_loss
    loss.backward()
    for name in ("encoder.conv_in.weight", "decoder.conv_out.weight", "quantize.embedding.weight"):
        grad = dict(tokenizer.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # the loss value: mse(z_q, z) * (1 + commitment_cost)
    with torch.no_grad():
        z = tokenizer.encoder(images)
        z_q = tokenizer.quantize.lookup(tokenizer.quantize.codes(z), config.latent_size)
        torch.testing.assert_close(vq_loss.detach(), 1.25 * ((z_q - z) ** 2).mean())


# ---- the golden transformer ------------------------------------------------------------------------
def test_teacher_forcing_reproduces_golden(golden):
    forward = golden["forward"]
    model = RARTransformer(GOLDEN_RAR)
    model.load_state_dict(golden["state_dict"], strict=True)
    model.eval()
    condition = model.preprocess_condition(forward["condition_raw"])
    assert torch.equal(condition, forward["condition_preprocessed"])
    assert torch.equal(model.null_condition(condition), forward["condition_null"])
    captured = {}
    handles = []
    for name, module in model.named_modules():
        if name.endswith("mlp.fc1") or name.endswith("mlp.act"):
            hook = lambda mod, inp, out, name=name: captured.__setitem__(f"{name}.out", out)  # noqa: E731
            handles.append(module.register_forward_hook(hook))
    try:
        for orders, suffix in ((None, "raster"), (forward["orders_random"], "random_order")):
            with torch.no_grad():
                logits, labels = model.forward(forward["input_ids"], condition, orders, return_labels=True)
            torch.testing.assert_close(logits, forward[f"logits_{suffix}"], atol=ATOL, rtol=0)
            assert torch.equal(labels, forward[f"labels_{suffix}"])
            torch.testing.assert_close(ar_loss(logits, labels), forward[f"loss_{suffix}"], atol=ATOL, rtol=0)
            expected = forward["fc1_acts_raster" if orders is None else "fc1_acts_random_order"]
            assert set(expected) <= set(captured)
            for key, value in expected.items():
                torch.testing.assert_close(captured[key], value, atol=ATOL, rtol=0, msg=key)
    finally:
        for handle in handles:
            handle.remove()


def test_generator_interface_on_golden(golden_generator, golden):
    forward = golden["forward"]
    tokens, labels = forward["input_ids"], forward["condition_raw"]
    logits = golden_generator.teacher_forced_logits(tokens, labels)
    assert logits.shape == (2, 64, 1024) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, forward["logits_raster"][:, :-1], atol=ATOL, rtol=0)
    captured = {}
    handle = golden_generator.transformer.get_submodule(golden_generator.fc1_activation_names()[1]).register_forward_hook(
        lambda mod, inp, out: captured.__setitem__("out", out)
    )
    try:
        golden_generator.teacher_forced_logits(tokens, labels)
    finally:
        handle.remove()
    # the module UnitMem reads for "post" holds what the official code's blocks.1.mlp.act outputs
    torch.testing.assert_close(captured["out"], forward["fc1_acts_raster"]["blocks.1.mlp.act.out"], atol=ATOL, rtol=0)
    assert golden_generator.fc1_names() == ["blocks.0.mlp.fc1", "blocks.1.mlp.fc1"]
    assert golden_generator.fc1_activation_names() == ["blocks.0.mlp.act", "blocks.1.mlp.act"]
    assert golden_generator.position_groups() == [
        PositionGroup("all", 0, 66), PositionGroup("last", 65, 66), PositionGroup("predicts-last", 64, 65)
    ]
    assert golden_generator.valid_prefix_lengths() == list(range(65))


@pytest.mark.parametrize("use_cache", [True, False])
def test_per_step_logits_before_guidance_match_golden(golden_generator, golden, use_cache):
    model, generate = golden_generator.transformer, golden["generate"]
    ids = generate["ids"]
    condition = model.preprocess_condition(torch.tensor(generate["call"]["condition"]))
    both = torch.cat([condition, model.null_condition(condition)])
    caches = model.new_kv_caches() if use_cache else None
    expected = dict(enumerate(generate["per_step_forward_last_logits_2B_V_steps_0_to_15"]))
    expected[63] = generate["per_step_forward_last_logits_2B_V_last_step"]
    with torch.no_grad():
        for step in range(64):
            if not use_cache and step not in expected:
                continue
            logits = model.next_token_logits(torch.cat([ids[:, :step], ids[:, :step]]), both, caches)
            if step in expected:
                torch.testing.assert_close(logits, expected[step], atol=ATOL, rtol=0, msg=f"step {step}")


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_replays_official_rng(golden_generator, golden, use_cache):
    """Spec 5.3 recipe: seed 0, one rand(B) as upstream's preprocess_condition, then sampling."""
    call, model = golden["generate"]["call"], golden_generator.transformer
    labels = torch.tensor(call["condition"])
    rng = torch.Generator().manual_seed(0)
    torch.rand(2, generator=rng)
    ids = model.generate(
        model.preprocess_condition(labels),
        guidance_scale=call["guidance_scale"],
        guidance_scale_pow=call["guidance_scale_pow"],
        temperature=call["randomize_temperature"],
        generator=rng,
        use_kv_cache=use_cache,
    )
    assert torch.equal(ids, golden["generate"]["ids"])
    if use_cache:  # the same through the Generator interface
        rng = torch.Generator().manual_seed(0)
        torch.rand(2, generator=rng)
        sampled = golden_generator.sample(
            labels, generator=rng, guidance_scale=4.0, guidance_scale_pow=1.2, temperature=1.02
        )
        assert torch.equal(sampled, golden["generate"]["ids_without_kv_cache_same_seed"])


# ---- official layouts ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rar-b", "rar-l", "rar-xl", "rar-xxl"])
def test_official_configs_match_manifests(name):
    generator = RARGenerator(CONFIGS[name], device="meta")
    for module, manifest_name in (
        (generator.transformer, name.replace("-", "_")),
        (generator.tokenizer, "maskgit_vqgan_imagenet_f16_256"),
    ):
        manifest = json.loads((DATA / "manifests" / f"{manifest_name}.json").read_text())
        state = module.state_dict()
        assert list(state) == list(manifest["state_dict"]), manifest_name
        for key, entry in manifest["state_dict"].items():
            assert tuple(state[key].shape) == tuple(entry["shape"]), key
            assert str(state[key].dtype) == f"torch.{entry['dtype']}", key
            assert state[key].is_meta
        assert sum(p.numel() for p in module.parameters()) == manifest["num_parameters"]
        for buffer, entry in manifest["non_persistent_buffers_not_in_state_dict"].items():
            assert buffer not in state and tuple(getattr(module, buffer).shape) == tuple(entry["shape"])
    assert generator.seq_len == 256 and generator.image_size == 256 and generator.num_classes == 1000


def test_after_load_rebuilds_the_causal_mask(golden_generator):
    mask = golden_generator.transformer.attn_mask
    assert not mask.is_meta and mask.shape == (1088, 1088)
    assert torch.equal(mask == 0, torch.ones(1088, 1088, dtype=torch.bool).tril())


# ---- decoding on a random model -----------------------------------------------------------------------
@pytest.mark.parametrize("guidance_scale, guidance_scale_pow", [(3.0, 1.0), (0.0, 0.0), (2.0, 0.0)])
def test_kv_cache_equals_full_recomputation(small_generator, guidance_scale, guidance_scale_pow):
    model = small_generator.transformer
    condition = model.preprocess_condition(torch.tensor([0, 7, 9]))
    results = []
    for use_cache in (True, False):
        rng = torch.Generator().manual_seed(123)
        ids = model.generate(condition, guidance_scale, guidance_scale_pow, 1.0, generator=rng, use_kv_cache=use_cache)
        results.append(ids)
    assert results[0].shape == (3, 64) and torch.equal(results[0], results[1])
    # logits along the sampled sequence agree step by step
    caches = model.new_kv_caches()
    with torch.no_grad():
        for step in range(64):
            cached = model.next_token_logits(results[0][:, :step], condition, caches)
            if step in (0, 1, 2, 3, 30, 63):
                full = model.next_token_logits(results[0][:, :step], condition)
                torch.testing.assert_close(cached, full, atol=1e-5, rtol=0, msg=f"step {step}")


def test_greedy_from_prefix(small_generator):
    tokens = torch.randint(0, 64, (2, 64), generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([1, 4])
    assert torch.equal(small_generator.greedy_from_prefix(tokens, labels, 64), tokens)
    teacher = small_generator.teacher_forced_logits
    for n_prefix in (0, 5, 63):
        out = small_generator.greedy_from_prefix(tokens, labels, n_prefix)
        assert torch.equal(out[:, :n_prefix], tokens[:, :n_prefix])
        # every decoded token is the argmax of the teacher-forced logits of its own prefix
        assert torch.equal(out[:, n_prefix:], teacher(out, labels)[:, n_prefix:].argmax(-1))
    with pytest.raises(ValueError, match="n_prefix"):
        small_generator.greedy_from_prefix(tokens, labels, 65)


def test_condition_dropout_and_orders_are_explicit(small_generator):
    model = small_generator.transformer
    labels = torch.tensor([0, 3, 9, 9])
    state = torch.get_rng_state()
    assert torch.equal(model.preprocess_condition(labels), labels + 65)
    assert torch.equal(torch.get_rng_state(), state)  # no draw at drop_p = 0
    assert torch.equal(model.preprocess_condition(labels, 1.0, torch.Generator()), torch.full((4,), 75))
    with pytest.raises(ValueError, match="labels"):
        model.preprocess_condition(torch.tensor([10]))
    raster = model.sample_orders(3, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(raster, torch.arange(64).expand(3, 64))
    shuffled = model.sample_orders(3, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(shuffled.sort(dim=1).values, raster) and not torch.equal(shuffled, raster)
    # a training step: labels come back in generation order, the loss is finite with dropout on
    tokens = torch.randint(0, 64, (3, 64), generator=torch.Generator().manual_seed(0))
    condition = model.preprocess_condition(labels[:3], 0.5, torch.Generator().manual_seed(0))
    model.train()
    try:
        logits, targets = model(tokens, condition, shuffled, return_labels=True)
    finally:
        model.eval()
    assert torch.equal(targets, torch.gather(tokens, 1, shuffled))
    assert logits.shape == (3, 65, 64) and torch.isfinite(ar_loss(logits, targets))


def test_images_to_samples_at_a_non_golden_size(small_generator):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([2, 8])
    tokens = small_generator.images_to_tokens(images)
    assert tokens.shape == (2, 64) and tokens.dtype == torch.int64 and tokens.max() < 64
    logits = small_generator.teacher_forced_logits(tokens, labels)
    assert logits.shape == (2, 64, 64) and torch.isfinite(logits).all()
    sampled = small_generator.sample(labels, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 64) and sampled.dtype == torch.int64
    decoded = small_generator.tokens_to_images(sampled)
    assert decoded.shape == (2, 3, 32, 32) and decoded.min() >= 0 and decoded.max() <= 1
    assert small_generator.position_groups()[1:] == [PositionGroup("last", 65, 66), PositionGroup("predicts-last", 64, 65)]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        small_generator.images_to_tokens(images * 2 - 1)
    with pytest.raises(ValueError, match="image_seq_len"):
        dataclasses.replace(SMALL, image_seq_len=60)
