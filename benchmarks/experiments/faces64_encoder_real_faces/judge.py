"""Judge encoder variants on real people: the 10 of issue 11 and a development set of 36 (dlib).

    python judge.py [--kind encoder|sface-emb|restyle|sface-body] WEIGHTS... [--photos out/photos]
                    [--refine 30,100] [--scale 1,1.25,1.5,2]

The development set is ``benchmarks/faces64_encoder.py``'s ``MORE_PEOPLE`` (35) plus facexlib
0.3.0's ``assets/test.jpg``; the scores are that benchmark's ``identification`` (identified, top 3,
mean rank, dlib distance). ``--refine``: the committed encoder's codes after N refinement steps;
``--scale``: its codes times s. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
sys.path.insert(0, str(HERE))
import faces64_encoder as fb  # noqa: E402

from anonymixer.models.bundle import faces64_bundle  # noqa: E402
from anonymixer.models.dcgan import Faces64Generator  # noqa: E402


def development_set(fr: fb.DlibRecognizer, photos: Path) -> fb.FaceSet:
    faces = fb.more_people_set(fr, photos)
    path = fb.archive_member(photos, "facexlib==0.3.0", "facexlib-0.3.0/assets/test.jpg", build_isolation=False)
    image, found = faces.read(path)
    faces.add(image, max(found, key=lambda f: float(f.box[2])), "facexlib test", fr)
    return faces


def load_encoder(kind: str, weights: str, generator: torch.nn.Module) -> torch.nn.Module:
    if kind == "encoder":
        return faces64_bundle(weights).build_encoder()
    base = faces64_bundle().build_encoder()
    if kind == "sface-emb":
        from sface_embedding import SEnc
        model: torch.nn.Module = SEnc(base)
        model.load_state_dict(torch.load(weights))
    elif kind == "restyle":
        from restyle import Restyle
        model = Restyle(base, generator)
        model.corr.load_state_dict(torch.load(weights))
    elif kind == "sface-body":
        from sface_body import Enc
        model = Enc(64)
        model.load_state_dict(torch.load(weights))
    else:
        raise SystemExit(f"unknown --kind {kind}")
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="*")
    parser.add_argument("--kind", default="encoder")
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--refine", default="")
    parser.add_argument("--scale", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fr = fb.DlibRecognizer()
    sets = {"official": fb.official_set(fr, Path(args.photos)), "development": development_set(fr, Path(args.photos))}
    inputs = {name: torch.from_numpy(np.stack(s.crops).astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
              for name, s in sets.items()}
    generator = faces64_bundle().build_generator()
    assert isinstance(generator, Faces64Generator)

    def report(label: str, codes: dict[str, torch.Tensor]) -> None:
        scores = {}
        for name, faces in sets.items():
            with torch.no_grad():
                recon = fb.to_uint8(generator(codes[name]))
            full = fb.identification(fr, faces, recon)
            scores[name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in full.items()
                            if k != "per_person_distance"}
        print(label, json.dumps(scores), flush=True)

    for weights in args.weights:
        encoder = load_encoder(args.kind, weights, generator)
        with torch.no_grad():
            report(weights, {name: encoder(x) for name, x in inputs.items()})
    encoder = faces64_bundle().build_encoder()
    with torch.no_grad():
        w0 = {name: encoder(x) for name, x in inputs.items()}
    for s in filter(None, args.scale.split(",")):
        report(f"scale {s}", {name: w * float(s) for name, w in w0.items()})
    if args.refine:
        from anonymixer.train.faces64 import IdentityLoss
        from anonymixer.train.refine import refine_codes
        identity = IdentityLoss()
        for steps in map(int, args.refine.split(",")):
            report(f"refined {steps}", {name: refine_codes(generator, identity, w0[name], inputs[name], steps=steps)
                                        for name in sets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
