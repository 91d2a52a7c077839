"""faces64: ORT vs torch protected faces for the same key, per mixer mode (`python benchmarks/keyed_mixer_faces64_parity.py`).

The encoder weights are a placeholder (faces64's encoder was not trained yet): parity does not
depend on them. Needs the faces64 family (anonymixer.models.dcgan).
"""
import numpy as np, tempfile
from anonymixer.models.bundle import ModelBundle
from anonymixer.models.configs import faces64
from anonymixer.models.dcgan import load_dcgan_state
from anonymixer.models.code_encoder import CodeEncoder
from anonymixer.export.onnx import export_onnx
from anonymixer.keys import Key
from anonymixer.runtime import Protector
cfg = faces64()
bundle = ModelBundle(config=cfg, encoder=CodeEncoder(cfg.encoder).state_dict(), generator=load_dcgan_state())
faces = np.random.default_rng(0).integers(0, 256, (8, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
key = Key(bytes(range(32)))
for mode in ("project", "rotate", "swap"):
    with tempfile.TemporaryDirectory() as d:
        export_onnx(bundle, d, mixer_mode=mode, progress=False)
        a = Protector(bundle, key, mixer_mode=mode).protect(faces).astype(np.float64)
        b = Protector(d, key, backend="ort").protect(faces).astype(np.float64)
        mse = max(np.mean((a - b) ** 2), 1e-12)
        print(f"{mode}: ORT vs torch PSNR {10 * np.log10(255 ** 2 / mse):.1f} dB, max diff {np.abs(a - b).max():.0f} levels")
