"""The layout of an export folder: the contract between `anonymixer export` and the runtimes.

    DIR/manifest.json
    DIR/encoder.onnx  DIR/mapping.onnx  DIR/mixer.onnx  DIR/generator.onnx        (fp32)
    DIR/encoder.fp16.onnx ...                                                     (--precision fp16)
    DIR/encoder.int8.onnx ...                                                     (--precision int8)
    DIR/<graph>.onnx.data                                       (external weights when a graph is large)

Graph I/O names and shapes are ``anonymixer.runtime.base.STAGE_IO``; the batch axis is dynamic.
Every graph takes and returns float32 whatever its precision, so callers never change.

``manifest.json`` (``MANIFEST_FORMAT``, version ``MANIFEST_VERSION``)::

    {"format": "anonymixer-onnx", "version": 1, "anonymixer_version": "...", "opset": 17,
     "model": {"name", "description", "is_random", "sha256" (of the bundle file, or null),
               "config": ModelConfig.to_dict()},
     "input_size": 256, "style_dim": 512, "n_latent": 18, "output_resolution": 256,
     "layer_mask": [3, 4, 5, 6, 7], "mixer_mode": "swap", "truncation_psi": 0.7,
     "graphs": {"<stage>": {"<precision>": {"file", "sha256", "bytes", "external_data": [files],
                "inputs": [{"name", "dtype", "shape"}], "outputs": [...],
                "operators": {"Conv": 53, ...}, "parity": {...}}}}}

Shapes use a string (``"batch"``) for the dynamic axis.
"""

from __future__ import annotations

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "anonymixer-onnx"
MANIFEST_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
GRAPHS = ("encoder", "mapping", "mixer", "generator")


def graph_filename(stage: str, precision: str = "fp32") -> str:
    """``encoder.onnx`` for fp32, ``encoder.fp16.onnx`` / ``encoder.int8.onnx`` otherwise."""
    if stage not in GRAPHS:
        raise ValueError(f"unknown graph {stage!r}; graphs are {', '.join(GRAPHS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return f"{stage}.onnx" if precision == "fp32" else f"{stage}.{precision}.onnx"
