"""The export's parity check can fail: a graph 1e-3 off PyTorch is reported and refused, at a pinned tolerance."""

import json

import numpy as np
import pytest

import anonymixer.export.onnx as export_module
from anonymixer.errors import ExportError
from anonymixer.export.layout import GRAPHS, graph_filename
from anonymixer.export.onnx import export_onnx, measure_parity
from anonymixer.runtime import Protector
from anonymixer.runtime.manifest import ExportManifest

# The documented bound (README, `anonymixer export`): ORT CPU within 1e-5 relative error of PyTorch.
TOLERANCE = 1e-5


class OffSession:
    """An ONNX Runtime session whose output is ``(1 + offset)`` times the real one: a relative error of
    exactly ``offset``, as a graph that computes something slightly different would give."""

    def __init__(self, session, offset):
        self.session, self.offset = session, offset

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, names, feeds):
        return [np.asarray(out) * np.float32(1.0 + self.offset) for out in self.session.run(names, feeds)]


class ExactSession:
    """Stands in for a session: returns ``ref`` (rows picked by the batch of the feed) times ``1 + offset``."""

    def __init__(self, ref, offset=0.0):
        self.ref, self.offset = ref, offset

    def get_inputs(self):
        class Input:
            name = "x"
        return [Input()]

    def run(self, names, feeds):
        return [self.ref[:len(feeds["x"])] * (1.0 + self.offset)]


def parity_with_offset(offset):
    ref = np.random.default_rng(0).standard_normal((3, 8, 16))
    return measure_parity(ExactSession(ref, offset), ExactSession(ref), {"x": np.zeros((3, 1))}, ref)


@pytest.mark.parametrize("offset", [2e-5, 1e-4, 1e-3, 1e-2])
def test_parity_fails_above_1e_minus_5(offset):
    parity = parity_with_offset(offset)
    assert parity["max"] == pytest.approx(offset, rel=1e-6)
    assert parity["passed"] is False and parity["tolerance"] == TOLERANCE


@pytest.mark.parametrize("offset", [0.0, 1e-6, 5e-6])
def test_parity_passes_at_or_below_1e_minus_5(offset):
    parity = parity_with_offset(offset)
    assert parity["passed"] is True and parity["tolerance"] == TOLERANCE


def test_an_exported_graph_1e_3_off_torch_fails_parity_and_the_export_refuses(tmp_path, monkeypatch, key):
    """The real export of random:tiny, with the shipped mapping graph's ORT output made 1e-3 off."""
    real_open = export_module.open_session
    out = tmp_path / "tiny"

    def open_session(path):
        session = real_open(path)
        return OffSession(session, 1e-3) if path == out / graph_filename("mapping") else session

    monkeypatch.setattr(export_module, "open_session", open_session)
    with pytest.raises(ExportError, match=r"parity check failed: mapping: relative error 1\.00e-03 > 1e-05") as exc:
        export_onnx("random:tiny", out, precisions=("fp32", "fp16"), progress=False)
    assert "\n" not in str(exc.value)
    manifest = json.loads((out / "manifest.json").read_text())  # written, so the failure can be inspected
    for stage in GRAPHS:
        parity = manifest["graphs"][stage]["fp32"]["parity"]
        assert parity["tolerance"] == TOLERANCE
        assert parity["passed"] is (stage != "mapping"), stage
    assert manifest["graphs"]["mapping"]["fp32"]["parity"]["max"] == pytest.approx(1e-3, rel=1e-3)
    assert not any(out.glob("*.fp16.onnx"))  # nothing was built on top of a failed graph
    # ...and nothing loads it: the runtimes and `anonymixer calibrate` read the folder through ExportManifest.
    with pytest.raises(ExportError, match="mapping failed the export's parity check"):
        ExportManifest(out)
    with pytest.raises(ExportError, match="parity"):
        Protector(str(out), key, backend="ort")
