"""StyleGAN2 generator: rosinality semantics and state-dict layout, early exit, clean ONNX export."""

from __future__ import annotations

import functools
import math
import warnings

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from anonymixer.models import configs
from anonymixer.models.stylegan2 import (Generator, ModulatedConv2d, NoiseInjection, SynthesisNetwork,
                                         Upsample, make_generator, rosinality_key)

CFG = configs.tiny().generator
RESOLUTIONS = [4, 8, 16, 32, 64]
# The tiny architecture, written out by hand rather than derived from GeneratorConfig.
TINY_CHANNELS = {4: 32, 8: 32, 16: 32, 32: 32, 64: 16}
BLUR_TAPS = [1.0, 3.0, 3.0, 1.0]


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def rms_rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(actual - expected) / torch.linalg.vector_norm(expected)).item()


def seeded_randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def generator() -> Generator:
    return make_generator(CFG, seed=0)


@pytest.fixture(scope="module")
def w_plus() -> torch.Tensor:
    return seeded_randn(3, CFG.n_latent, CFG.style_dim)


def synthesis_at(generator: Generator, resolution: int | None, prenormalize: bool = True) -> SynthesisNetwork:
    """A second synthesis network with the generator's weights, stopping at ``resolution``."""
    net = SynthesisNetwork(CFG, output_resolution=resolution, fp16_prenormalize=prenormalize)
    net.load_state_dict(generator.synthesis.state_dict(), strict=True)
    return net.eval()


# --- references written from rosinality's formulation, reading rosinality-named parameters -------

Params = dict[str, torch.Tensor]


def blur_kernel(gain: float) -> torch.Tensor:
    k = torch.tensor(BLUR_TAPS)
    return torch.outer(k, k) / k.sum() ** 2 * gain


def reference_upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """rosinality's upfirdn2d_native (zero insertion, pad, true convolution), per channel."""
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b * c, 1, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    out = F.conv2d(x, torch.flip(kernel, [0, 1])[None, None])
    return out.reshape(b, c, *out.shape[2:])


def equal_linear(p: Params, name: str, x: torch.Tensor, lr_mul: float = 1.0) -> torch.Tensor:
    weight = p[f"{name}.weight"]
    return F.linear(x, weight * lr_mul / math.sqrt(weight.shape[1])) + p[f"{name}.bias"] * lr_mul


def fused_modulated_conv(p: Params, name: str, x: torch.Tensor, style: torch.Tensor, demodulate: bool = True,
                         upsample: bool = False) -> torch.Tensor:
    """Per-sample modulated weights and a grouped conv, as rosinality's ``fused=True`` path."""
    b, cin, h, w = x.shape
    _, cout, _, k, _ = p[f"{name}.weight"].shape
    s = equal_linear(p, f"{name}.modulation", style)
    weight = p[f"{name}.weight"] / math.sqrt(cin * k * k) * s[:, None, :, None, None]
    if demodulate:
        weight = weight * torch.rsqrt(weight.square().sum((2, 3, 4)) + 1e-8)[:, :, None, None, None]
    x = x.reshape(1, b * cin, h, w)
    if upsample:
        weight = weight.transpose(1, 2).reshape(b * cin, cout, k, k)
        out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=b)
        q = len(BLUR_TAPS) - 2 - (k - 1)
        pad = ((q + 1) // 2 + 1, q // 2 + 1)
        return reference_upfirdn2d(out.reshape(b, cout, *out.shape[2:]), p[f"{name}.blur.kernel"], 1, pad)
    out = F.conv2d(x, weight.reshape(b * cout, cin, k, k), padding=k // 2, groups=b)
    return out.reshape(b, cout, h, w)


def reference_synthesis(p: Params, w: torch.Tensor) -> torch.Tensor:
    """rosinality's Generator.forward (constant noise, no truncation) on a ``g_ema``-named dict."""
    def styled_conv(name: str, x: torch.Tensor, style: torch.Tensor, noise: int,
                    upsample: bool = False) -> torch.Tensor:
        x = fused_modulated_conv(p, f"{name}.conv", x, style, upsample=upsample)
        x = x + p[f"{name}.noise.weight"] * p[f"noises.noise_{noise}"]
        return F.leaky_relu(x + p[f"{name}.activate.bias"][None, :, None, None], 0.2) * math.sqrt(2)

    def to_rgb(name: str, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        rgb = fused_modulated_conv(p, f"{name}.conv", x, style, demodulate=False) + p[f"{name}.bias"]
        if skip is None:
            return rgb
        return rgb + reference_upfirdn2d(skip, p[f"{name}.upsample.kernel"], 2, (2, 1))

    x = p["input.input"].repeat(w.shape[0], 1, 1, 1)
    x = styled_conv("conv1", x, w[:, 0], 0)
    skip = to_rgb("to_rgb1", x, w[:, 1], None)
    for k, i in enumerate(range(1, CFG.n_latent - 1, 2)):
        x = styled_conv(f"convs.{2 * k}", x, w[:, i], i, upsample=True)
        x = styled_conv(f"convs.{2 * k + 1}", x, w[:, i + 1], i + 1)
        skip = to_rgb(f"to_rgbs.{k}", x, w[:, i + 2], skip)
    return skip


def reference_mapping(p: Params, z: torch.Tensor) -> torch.Tensor:
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    for i in range(1, CFG.n_mlp + 1):
        x = F.leaky_relu(equal_linear(p, f"style.{i}", x, lr_mul=0.01), 0.2) * math.sqrt(2)
    return x


def random_g_ema() -> Params:
    """Every tensor of a tiny ``g_ema`` random (noise strengths, biases and FIR kernels included)."""
    return {k: seeded_randn(*shape, seed=i) for i, (k, shape) in enumerate(rosinality_g_ema_shapes().items())}


def generator_from_g_ema(g_ema: Params) -> Generator:
    """Load a ``g_ema`` dict the importer's way: keys renamed, ``w_avg`` added, strict."""
    generator = Generator(CFG)
    state = {rosinality_key(k): v for k, v in g_ema.items()}
    generator.load_state_dict({**state, "w_avg": torch.zeros(CFG.style_dim)}, strict=True)
    return generator.eval()


def rosinality_g_ema_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of rosinality's ``g_ema`` for the tiny config (64x64, style 64, 2 MLP layers)."""
    assert (CFG.size, CFG.style_dim, CFG.n_mlp) == (64, 64, 2)
    sd = 64
    shapes: dict[str, tuple[int, ...]] = {}
    for i in (1, 2):
        shapes[f"style.{i}.weight"], shapes[f"style.{i}.bias"] = (sd, sd), (sd,)

    def modulated_conv(name: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{name}.weight"] = (1, cout, cin, k, k)
        shapes[f"{name}.modulation.weight"], shapes[f"{name}.modulation.bias"] = (cin, sd), (cin,)

    def styled_conv(name: str, cin: int, cout: int, upsample: bool) -> None:
        modulated_conv(f"{name}.conv", cin, cout, 3)
        shapes[f"{name}.noise.weight"], shapes[f"{name}.activate.bias"] = (1,), (cout,)
        if upsample:
            shapes[f"{name}.conv.blur.kernel"] = (4, 4)

    def to_rgb(name: str, cin: int, upsample: bool) -> None:
        modulated_conv(f"{name}.conv", cin, 3, 1)
        shapes[f"{name}.bias"] = (1, 3, 1, 1)
        if upsample:
            shapes[f"{name}.upsample.kernel"] = (4, 4)

    shapes["input.input"] = (1, 32, 4, 4)
    styled_conv("conv1", 32, 32, False)
    to_rgb("to_rgb1", 32, False)
    for k, res in enumerate([8, 16, 32, 64]):
        cin, cout = TINY_CHANNELS[res // 2], TINY_CHANNELS[res]
        styled_conv(f"convs.{2 * k}", cin, cout, True)
        styled_conv(f"convs.{2 * k + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{k}", cout, True)
    for layer, res in enumerate([4, 8, 8, 16, 16, 32, 32, 64, 64]):
        shapes[f"noises.noise_{layer}"] = (1, 1, res, res)
    return shapes


# --- modulated convolution ------------------------------------------------------------------------

@pytest.mark.parametrize("prenormalize", [False, True])
@pytest.mark.parametrize("kind", ["conv3x3", "upsample_conv3x3", "to_rgb1x1"])
def test_non_fused_modulated_conv_equals_fused_grouped_conv(kind: str, prenormalize: bool) -> None:
    torch.manual_seed(0)
    to_rgb, upsample = kind == "to_rgb1x1", kind == "upsample_conv3x3"
    conv = ModulatedConv2d(16, 3 if to_rgb else 24, 1 if to_rgb else 3, 32, demodulate=not to_rgb,
                           upsample=upsample, prenormalize=prenormalize)
    with torch.no_grad():
        conv.modulation.weight.mul_(3.0)  # styles of both signs and varied scales per channel
        x, style = torch.randn(3, 16, 8, 8), torch.randn(3, 32)
        params = {f"conv.{k}": v for k, v in conv.state_dict().items()}
        out = conv(x, style)
        expected = fused_modulated_conv(params, "conv", x, style, demodulate=not to_rgb, upsample=upsample)
    assert out.shape == expected.shape
    assert rel_err(out, expected) < 1e-5


def test_skip_upsample_equals_zero_insertion_upfirdn2d() -> None:
    x = seeded_randn(2, 3, 8, 8)
    out = Upsample(CFG.blur_kernel, channels=3)(x)
    assert out.shape == (2, 3, 16, 16)
    assert rel_err(out, reference_upfirdn2d(x, blur_kernel(gain=4.0), 2, (2, 1))) < 1e-6


def test_synthesis_equals_rosinalitys_forward_on_the_same_weights(w_plus: torch.Tensor) -> None:
    g_ema = random_g_ema()
    with torch.no_grad():
        assert rel_err(generator_from_g_ema(g_ema)(w_plus), reference_synthesis(g_ema, w_plus)) < 1e-5


def test_mapping_equals_rosinalitys_style_network() -> None:
    g_ema, z = random_g_ema(), seeded_randn(4, CFG.style_dim)
    with torch.no_grad():
        assert rel_err(generator_from_g_ema(g_ema).mapping(z), reference_mapping(g_ema, z)) < 1e-5


def test_fp16_prenormalize_does_not_change_the_image(generator: Generator, w_plus: torch.Tensor) -> None:
    with torch.no_grad():
        on, off = synthesis_at(generator, None, True)(w_plus), synthesis_at(generator, None, False)(w_plus)
    assert rel_err(on, off) < 1e-5


def test_fp16_prenormalize_keeps_half_precision_accurate_with_large_weights(generator: Generator,
                                                                           w_plus: torch.Tensor) -> None:
    state = {k: v * 1000 if k.startswith("conv") and k.endswith("conv.weight") else v
             for k, v in generator.synthesis.state_dict().items()}
    errors = {}
    for prenormalize in (True, False):
        net = SynthesisNetwork(CFG, fp16_prenormalize=prenormalize)
        net.load_state_dict(state, strict=True)
        with torch.no_grad():
            expected = net(w_plus)
            errors[prenormalize] = rel_err(net.half()(w_plus.half()).float(), expected)
    assert errors[True] < 1e-2
    assert errors[False] > 0.5  # without it the demodulation sums overflow float16


def test_noise_is_the_constant_buffer_times_its_weight_for_every_sample() -> None:
    noise = NoiseInjection()
    with torch.no_grad():
        noise.weight.fill_(0.5)
    x, buffer = seeded_randn(2, 4, 8, 8), seeded_randn(1, 1, 8, 8, seed=2)
    assert torch.equal(noise(x, buffer), x + 0.5 * buffer.expand(2, 4, 8, 8))


# --- early exit and W+ layers ---------------------------------------------------------------------

@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_early_exit_equals_a_model_built_for_that_resolution(generator: Generator, w_plus: torch.Tensor,
                                                              resolution: int) -> None:
    net = synthesis_at(generator, None)
    net.output_resolution = resolution
    with torch.no_grad():
        out = net(w_plus)
        expected = synthesis_at(generator, resolution)(w_plus)
    assert out.shape == (3, 3, resolution, resolution)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_early_exit_returns_the_full_networks_skip_image_at_that_resolution(
        generator: Generator, w_plus: torch.Tensor, resolution: int) -> None:
    net = synthesis_at(generator, None)
    to_rgb = net.to_rgb1 if resolution == 4 else net.to_rgbs[int(math.log2(resolution)) - 3]
    captured = []
    to_rgb.register_forward_hook(lambda module, args, out: captured.append(out))
    with torch.no_grad():
        net(w_plus)
        net.output_resolution = resolution
        out = net(w_plus)
    assert torch.equal(out, captured[0])


def test_early_exit_at_full_size_is_the_full_output(generator: Generator, w_plus: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(synthesis_at(generator, CFG.size)(w_plus), generator(w_plus))


def test_n_latent_used_follows_rosinality_layer_indexing() -> None:
    net = SynthesisNetwork(CFG)
    used = {}
    for resolution in RESOLUTIONS:
        net.output_resolution = resolution
        used[resolution] = net.n_latent_used
    assert used == {4: 2, 8: 4, 16: 6, 32: 8, 64: 10}


def test_each_layer_reads_rosinalitys_w_plus_index_and_noise_buffer(generator: Generator,
                                                                      w_plus: torch.Tensor) -> None:
    net = synthesis_at(generator, None)
    expected: dict[str, tuple[int, int | None]] = {"conv1": (0, 0), "to_rgb1": (1, None)}
    for k in range(4):  # (W+ layer, noise buffer) per module
        expected[f"convs.{2 * k}"] = (2 * k + 1, 2 * k + 1)
        expected[f"convs.{2 * k + 1}"] = (2 * k + 2, 2 * k + 2)
        expected[f"to_rgbs.{k}"] = (2 * k + 3, None)
    seen: dict[str, tuple[torch.Tensor, ...]] = {}

    def record(module: torch.nn.Module, args: tuple[torch.Tensor, ...], name: str) -> None:
        seen[name] = args

    for name in expected:
        net.get_submodule(name).register_forward_pre_hook(functools.partial(record, name=name))
    with torch.no_grad():
        net(w_plus)
    for name, (layer, noise) in expected.items():
        assert torch.equal(seen[name][1], w_plus[:, layer]), name
        if noise is not None:
            assert seen[name][2] is getattr(net.noises, f"noise_{noise}"), name


def test_extra_w_plus_layers_are_ignored(generator: Generator, w_plus: torch.Tensor) -> None:
    net = synthesis_at(generator, 16)
    changed_tail = torch.cat([w_plus[:, :6], seeded_randn(3, 12, CFG.style_dim, seed=7)], dim=1)
    with torch.no_grad():
        assert torch.equal(net(w_plus[:, :6]), net(w_plus))
        assert torch.equal(net(changed_tail), net(w_plus))


def test_each_w_plus_layer_in_use_changes_the_image(generator: Generator, w_plus: torch.Tensor) -> None:
    with torch.no_grad():
        base = generator(w_plus)
        for layer in range(CFG.n_latent):
            w = w_plus.clone()
            w[:, layer] += 1.0
            assert not torch.allclose(generator(w), base), f"W+ layer {layer} has no effect"


def test_too_few_w_plus_layers_is_an_error(generator: Generator, w_plus: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="needs at least 10"):
        generator(w_plus[:, :9])


@pytest.mark.parametrize("resolution", [2, 48, 128])
def test_output_resolution_must_be_a_power_of_two_up_to_size(resolution: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        SynthesisNetwork(CFG, output_resolution=resolution)


# --- determinism and batching ---------------------------------------------------------------------

def test_same_input_gives_bit_identical_output(generator: Generator, w_plus: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(generator(w_plus), generator(w_plus.clone()))


def test_sample_in_a_batch_of_three_equals_it_alone(generator: Generator, w_plus: torch.Tensor) -> None:
    with torch.no_grad():
        batch = generator(w_plus)
        # RMS-relative: BLAS picks GEMV for one sample and GEMM for three, which differ in the
        # last float32 bits (max-abs relative error is about 1.4e-6 here).
        for i in range(3):
            assert rms_rel_err(batch[i:i + 1], generator(w_plus[i:i + 1])) < 1e-6


def test_make_generator_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = make_generator(CFG, seed=5), make_generator(CFG, seed=5), make_generator(CFG, seed=6)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["synthesis.input.input"], sc["synthesis.input.input"])


def test_w_avg_is_the_mean_latent_and_truncation_pulls_towards_it(generator: Generator) -> None:
    assert "w_avg" in dict(generator.named_buffers())
    assert torch.equal(generator.w_avg, generator.mean_latent(n=4096, seed=0))
    w = generator.mapping(seeded_randn(2, CFG.style_dim))
    assert w.shape == (2, CFG.style_dim)
    assert torch.allclose(generator.truncate(w, 0.0), generator.w_avg.expand(2, -1))
    assert torch.allclose(generator.truncate(w, 1.0), w)
    assert torch.allclose(generator.truncate(w, 0.5), (w + generator.w_avg) / 2, atol=1e-6)


# --- state dict layout ----------------------------------------------------------------------------

def test_state_dict_is_rosinalitys_g_ema_after_rename_plus_w_avg(generator: Generator) -> None:
    expected = {("mapping." + k if k.startswith("style.") else "synthesis." + k): shape
                for k, shape in rosinality_g_ema_shapes().items()}
    expected["w_avg"] = (CFG.style_dim,)
    actual = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    assert sorted(set(actual) ^ set(expected)) == []
    assert actual == expected


# --- ONNX export ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_path(generator: Generator, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("onnx") / "synthesis.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
        torch.onnx.export(generator, (seeded_randn(2, CFG.n_latent, CFG.style_dim),), path, opset_version=17,
                          dynamo=False, input_names=["w_plus"], output_names=["image"],
                          dynamic_axes={"w_plus": {0: "batch"}, "image": {0: "batch"}})
    return path


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_matches_torch(generator: Generator, onnx_path: str, batch: int) -> None:
    w = seeded_randn(batch, CFG.n_latent, CFG.style_dim, seed=batch)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"w_plus": w.numpy()})
    with torch.no_grad():
        expected = generator(w)
    assert out.shape == (batch, 3, CFG.size, CFG.size)
    assert rel_err(torch.from_numpy(out), expected) < 1e-5


def test_onnx_graph_has_no_scatter_and_only_constant_conv_weights(onnx_path: str) -> None:
    graph = onnx.load(onnx_path).graph
    ops = {node.op_type for node in graph.node}
    assert not ops & {"ScatterND", "ScatterElements", "Scatter"}
    constants = {init.name for init in graph.initializer}
    for node in graph.node:  # topologically sorted; the exporter shares duplicate weights via Identity
        if node.op_type == "Constant" or (node.op_type == "Identity" and node.input[0] in constants):
            constants.update(node.output)
    convs = [node for node in graph.node if node.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) == 9 + 5 + 4 + 4  # styled convs, ToRGBs, blurs after upsampling, skip upsamplers
    assert [node.name for node in convs if node.input[1] not in constants] == []


# --- size of the real models ----------------------------------------------------------------------

def test_ffhq1024_synthesis_has_28_27_million_parameters() -> None:
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    full = Generator(configs.ffhq1024().generator)
    small = Generator(configs.ffhq256().generator)
    print(f"\nffhq1024 synthesis: {count(full.synthesis):,} parameters; mapping: {count(full.mapping):,}"
          f"\nffhq256 synthesis: {count(small.synthesis):,} parameters; mapping: {count(small.mapping):,}")
    assert abs(count(full.synthesis) - 28.27e6) < 0.01 * 28.27e6
    assert count(full.mapping) == 8 * (512 * 512 + 512)


def test_random_generator_images_stay_mostly_inside_the_unit_range():
    cfg = configs.tiny().generator
    generator = make_generator(cfg, seed=3)
    z = torch.randn(6, cfg.style_dim, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        w = generator.truncate(generator.mapping(z), 0.7)
        image = generator(w[:, None].expand(-1, cfg.n_latent, -1))
    assert 0.2 < image.square().mean().sqrt().item() < 0.7
    assert (image.abs() > 1).float().mean().item() < 0.05
