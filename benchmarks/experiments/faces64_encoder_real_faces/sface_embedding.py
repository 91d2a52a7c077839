import sys, time, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
from anonymixer.atomic import replacing_file
from torch import nn
from anonymixer.models.bundle import faces64_bundle
from anonymixer.models.sface import load_sface, faces64_to_sface
from anonymixer.train.faces64 import IdentityLoss, sample_faces, lr_at
from anonymixer.train.augment import camera_crop
class SEnc(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base; self.sface = load_sface(); self.sface.requires_grad_(False)
        self.mlp = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 100))
        nn.init.zeros_(self.mlp[2].weight); nn.init.zeros_(self.mlp[2].bias)
    def forward(self, x):
        e = self.sface(faces64_to_sface(x).contiguous(memory_format=torch.channels_last), normalize=True)
        return self.base(x) + self.mlp(e).unsqueeze(1)
if __name__ == '__main__':
    steps, out = int(sys.argv[1]), sys.argv[2]; lr0 = 5e-4
    torch.set_num_threads(2); torch.manual_seed(0)
    b = faces64_bundle(); G = b.build_generator(); G.requires_grad_(False)
    E = SEnc(b.build_encoder())
    idl = IdentityLoss(); rng = np.random.default_rng(0); trng = torch.Generator().manual_seed(0)
    E.train(); E.sface.eval()
    opt = torch.optim.AdamW([{'params': E.base.parameters(), 'lr': lr0}, {'params': E.mlp.parameters(), 'lr': 2e-3}], weight_decay=1e-4)
    t0 = time.perf_counter()
    for step in range(steps):
        f = lr_at(step, steps, 1.0, 10); opt.param_groups[0]['lr'] = lr0 * f; opt.param_groups[1]['lr'] = 2e-3 * f
        z, x = sample_faces(G, 48, trng); xin = camera_crop(x, rng)
        w = E(xin); xh = G(w); lc = F.mse_loss(w, z); lp = F.l1_loss(xh, x)
        with torch.no_grad(): t = idl.embed(x[:16])
        li = idl(xh[:16], t).mean(); loss = lc + lp + li
        opt.zero_grad(); loss.backward(); opt.step()
        if step % 20 == 0: print(step, round(lc.item(),3), round(lp.item(),3), round(li.item(),3), round(time.perf_counter()-t0), flush=True)
    E.eval()
    with replacing_file(Path(out)) as handle:  # atomic
        torch.save(E.state_dict(), handle)
