"""Generator-only synthetic evaluation on faces64 (its encoder was not trained yet): identities = codes.

    python benchmarks/keyed_mixer_faces64.py 200 OUT [MODES] [RANKS]
    python benchmarks/keyed_mixer_faces64.py 200 out rotate,rotate-noguard,project,swap 10,25,50,75,90

Needs the faces64 family (anonymixer.models.dcgan) and dlib. Once faces64 ships its encoder, use
`anonymixer evaluate --synthetic 200 --model faces64 --fr dlib --out OUT` instead (through the encoder).
Results: benchmarks/results/keyed_mixer_faces64/ and benchmarks/RESULTS.md.
"""
import sys, time
from pathlib import Path
from anonymixer.models.bundle import ModelBundle
from anonymixer.models.configs import faces64
from anonymixer.models.dcgan import load_dcgan_state
from anonymixer.models.code_encoder import CodeEncoder
from anonymixer.eval.synthetic import SyntheticConfig, evaluate_synthetic
from anonymixer.eval.synthetic_report import markdown, write_synthetic_reports

n = int(sys.argv[1]); out = sys.argv[2]
modes = tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ("rotate", "rotate-noguard", "project", "swap")
ranks = tuple(int(r) for r in sys.argv[4].split(",")) if len(sys.argv) > 4 else (10, 25, 50, 75, 90)
cfg = faces64()
# Placeholder encoder weights: never run (generator-only protocol, through_encoder=False).
bundle = ModelBundle(config=cfg, encoder=CodeEncoder(cfg.encoder).state_dict(), generator=load_dcgan_state(),
                     sources=[{"kind": "dcgan", "file": "gan-face-generate", "sha256": ""}])
t = time.time()
result = evaluate_synthetic(SyntheticConfig(model=bundle, identities=n, modes=modes, ranks=ranks,
                                            through_encoder=False, fr="dlib"))
write_synthetic_reports(result, Path(out))
print("\n".join(markdown(result)))
print(f"{time.time() - t:.0f} s")
