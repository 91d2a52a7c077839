"""Does faces64 keep a real person recognisable under one key? dlib on several photos per person.

    python benchmarks/faces64_real_people.py [--photos out/photos] [--out out/faces64_real_people]

The keyed-mixer figures (``anonymixer evaluate --synthetic``) are on generated faces. This asks the
same questions on real people with several photos each, from ``dlib==19.5.0``'s source archive
(documentation examples, fetched with ``pip download`` into ``--photos``): five LFW "Johns" with 11
photos each and four actors with 6 photos each (the ``bald_guys.jpg`` collage; faces are assigned
to people by their centres, listed below). Every face is aligned at faces64's template (64 px),
then judged by dlib (originals: full resolution, dlib's own alignment; 64-px faces upscaled to 256):

- ``original``: original vs original (the recogniser's own figure on these photos);
- ``crop_64px``: the 64-px crop vs itself across photos (what any 64-px model starts from);
- ``reconstruction``: G(E(x)) vs G(E(x)) (the encoder alone, no key);
- ``protected_same_key``: protected faces under one shared key (utility: the FR system should
  still match a person's photos);
- ``protected_across_keys``: a person's photos under key A vs under key B (unlinkability: mated
  pairs here should look like strangers, EER near 0.5);
- ``protected_vs_original``: the protected face vs its own original photo (should be a stranger:
  the share under dlib's 0.6 threshold is the share that leaks).

Mated pairs: two different photos of one person; non-mated: photos of two people. Reports EER,
the mean mated and non-mated distances, FAR and FRR at dlib's 0.6 threshold, and for ``protected_vs_original`` the share of faces whose
protected face is under 0.6 from their own original. All of it for the encoder's codes and for
codes refined with ``--refine-steps`` of enrolment-time refinement. Writes ``--out``/faces64_real_people.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

from anonymixer.atomic import write_json
from anonymixer.eval.fr import DlibRecognizer
from anonymixer.eval.metrics import eer
from anonymixer.eval.protocols import eval_key
from anonymixer.face.guard import redraw_feeds
from anonymixer.runtime import Protector
from anonymixer.runtime.protector import faces_to_input, output_to_faces

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faces64_encoder import (DLIB_EXAMPLES, DLIB_MATCH, FaceSet, archive_member,  # noqa: E402
                             dlib_generated)

JOHNS = ("John_Salley", "John_Savage", "John_Schneider", "John_Shimkus", "John_Simm")
# Face centres (x, y) in bald_guys.jpg, six photos of each of four actors.
BALD_GUYS = {
    "Vin Diesel": ((143, 150), (386, 291), (635, 178), (139, 453), (649, 512), (152, 1374)),
    "Jason Statham": ((392, 101), (956, 173), (389, 515), (958, 479), (142, 767), (497, 912)),
    "Dwayne Johnson": ((1600, 233), (1879, 480), (1691, 751), (1164, 1386), (1513, 1392), (1863, 1389)),
    "Bruce Willis": ((1150, 836), (853, 897), (120, 1049), (1186, 1133), (847, 1315), (451, 1327)),
}
REQUIREMENT = "dlib==19.5.0"


def johns_photos(folder: Path) -> list[tuple[Path, str, str]]:
    """``(extracted photo, archive member, person as in JOHNS)`` for every photo of the five Johns
    in the dlib 19.5.0 archive (downloaded into ``folder`` once)."""
    archive_member(folder, REQUIREMENT, f"{DLIB_EXAMPLES}/faces/bald_guys.jpg")  # downloads once
    tar_path = sorted(folder.glob("dlib-19.5.0.tar.gz"))[-1]
    with tarfile.open(tar_path) as tar:
        members = sorted(m.name for m in tar.getmembers()
                         if m.name.startswith(f"{DLIB_EXAMPLES}/johns/") and m.name.endswith(".jpg"))
    return [(archive_member(folder, REQUIREMENT, member), member, member.split("/")[-2])
            for member in members if member.split("/")[-2] in JOHNS]


def people_with_several_photos(fr: DlibRecognizer, folder: Path) -> FaceSet:
    """The 79 faces of nine people (``people`` holds each face's person)."""
    faces = FaceSet()
    for path, member, person in johns_photos(folder):
        image, found = faces.read(path)
        if not found:
            raise ValueError(f"{member}: YuNet finds no face")
        faces.add(image, max(found, key=lambda f: float(f.box[2] * f.box[3])), person.replace("_", " "), fr)
    image, found = faces.read(archive_member(folder, REQUIREMENT, f"{DLIB_EXAMPLES}/faces/bald_guys.jpg"))
    for person, centres in BALD_GUYS.items():
        for cx, cy in centres:
            face = min(found, key=lambda f: float((f.box[0] + f.box[2] / 2 - cx) ** 2
                                                  + (f.box[1] + f.box[3] / 2 - cy) ** 2))
            faces.add(image, face, person, fr)
    return faces


def pair_figures(a: np.ndarray, b: np.ndarray, people: list[str], same_photo_too: bool = False) -> dict[str, float]:
    """EER and mean distances of photos' templates ``a[i]`` vs ``b[j]``: mated i != j of one person."""
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    who = np.asarray(people)
    same = who[:, None] == who[None, :]
    if same_photo_too:  # a and b are two different renderings: (i, j) and (j, i) are different pairs
        pairs = ~np.eye(len(who), dtype=bool)
    else:  # each unordered pair once, no photo with itself
        pairs = np.triu(np.ones_like(same), 1).astype(bool)
    mated, non_mated = dist[same & pairs], dist[~same & pairs]
    return {"eer": eer(-mated, -non_mated).rate, "mated_mean": float(mated.mean()),
            "non_mated_mean": float(non_mated.mean()), "far_at_0.6": float((non_mated < DLIB_MATCH).mean()),
            "frr_at_0.6": float((mated >= DLIB_MATCH).mean()), "mated_pairs": int(mated.size),
            "non_mated_pairs": int(non_mated.size)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="faces64")
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--out", default="out/faces64_real_people")
    parser.add_argument("--rank", type=int, default=None, help="the project mixer's rank r (default: the model's, D/2)")
    parser.add_argument("--draw", default="own", choices=("own", "first"),
                        help="the key's own draw, or faces64's draw 4, the one its paste-back tries first (the key's "
                             "own, face.guard.steered: the person's head turn kept, lit evenly; session 8's "
                             "'pose-kept' kept the head turn only)")
    parser.add_argument("--refine-steps", type=int, default=30,
                        help="also with codes refined at enrolment (anonymixer.train.refine); 0: encoder only")
    args = parser.parse_args(argv)
    fr = DlibRecognizer()
    faces = people_with_several_photos(fr, Path(args.photos))
    crops = np.stack(faces.crops)  # (N, 64, 64, 3) uint8 RGB
    originals = np.stack(faces.originals)
    key_a, key_b = eval_key(0, "A", "*"), eval_key(0, "B", "*")
    t_crops = dlib_generated(fr, crops)
    report: dict[str, object] = {"model": args.model, "faces": len(faces.people), "people": sorted(set(faces.people)),
                                 "original": pair_figures(originals, originals, faces.people),
                                 "crop_64px": pair_figures(t_crops, t_crops, faces.people)}
    options = {} if args.rank is None else {"project_rank": args.rank}
    report["project_rank"] = args.rank
    report["draw"] = args.draw
    with Protector(args.model, key_a, **options) as protector_a, Protector(args.model, key_b, **options) as protector_b:
        backend = protector_a.backend
        target = faces_to_input(crops, protector_a.input_size)
        w_encoder = backend.stage("encoder").run({"face": target})["w_real"]
        codes = {"encoder": w_encoder}
        if args.refine_steps > 0:  # enrolment-time refinement from the encoder's code (torch)
            import torch

            from anonymixer.models.bundle import resolve_spec
            from anonymixer.models.dcgan import Faces64Generator
            from anonymixer.train.faces64 import IdentityLoss
            from anonymixer.train.refine import refine_codes

            generator = resolve_spec(args.model).build_generator()
            if not isinstance(generator, Faces64Generator):
                parser.error(f"--refine-steps needs a faces64 model, not {args.model}")
            codes[f"refined_{args.refine_steps}"] = refine_codes(
                generator, IdentityLoss(), torch.from_numpy(w_encoder), torch.from_numpy(target),
                steps=args.refine_steps).numpy()

        def render(w: np.ndarray) -> np.ndarray:
            """dlib templates of the generator's faces for codes ``w``."""
            return dlib_generated(fr, output_to_faces(backend.stage("generator").run({"w_prot": w})["image"]))

        def protect(protector: Protector, w_real: np.ndarray) -> np.ndarray:
            """The Protector's mixer and generator on given codes (so that refined codes can go in): the
            key's own draw, or (``--draw first``) the one paste-back tries first for faces64 (draw 4)."""
            feeds = protector.key_feeds if args.draw == "own" else redraw_feeds(protector)[3]
            return render(protector.backend.stage("mixer").run({"w_real": w_real, **feeds})["w_prot"])

        for label, w_real in codes.items():
            t_recon, t_a, t_b = render(w_real), protect(protector_a, w_real), protect(protector_b, w_real)
            own = np.linalg.norm(t_a - originals, axis=1)
            report[label] = {
                "reconstruction": pair_figures(t_recon, t_recon, faces.people),  # no key: G(w_real)
                "protected_same_key": pair_figures(t_a, t_a, faces.people),
                "protected_across_keys": pair_figures(t_a, t_b, faces.people, same_photo_too=True),
                "protected_vs_original": {"distance_mean": float(own.mean()),
                                          "share_under_0.6": float((own < DLIB_MATCH).mean())}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "faces64_real_people.json", report, indent=2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
