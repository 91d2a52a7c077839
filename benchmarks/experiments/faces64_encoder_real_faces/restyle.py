import sys, time, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
from anonymixer.atomic import replacing_file
from torch import nn
from anonymixer.models.bundle import faces64_bundle
from anonymixer.models.code_encoder import CodeEncoder
from anonymixer.models.configs import faces64
from anonymixer.train.faces64 import IdentityLoss, sample_faces, lr_at
from anonymixer.train.augment import camera_crop
class Restyle(nn.Module):
    def __init__(self, base, G):
        super().__init__()
        self.base = base; self.G = G
        cfg = faces64().encoder
        self.corr = CodeEncoder(cfg)
        old = self.corr.stem[0]; new = nn.Conv2d(6, old.out_channels, 3, 1, 1, bias=False)
        with torch.no_grad():
            new.weight[:, :3] = base.stem[0].weight; new.weight[:, 3:] = 0
        self.corr.stem[0] = new
        self.corr.load_state_dict({k: v for k, v in base.state_dict().items() if k != 'stem.0.weight'}, strict=False)
        nn.init.zeros_(self.corr.head[2].weight); nn.init.zeros_(self.corr.head[2].bias)
    def forward(self, x, iters=1):
        with torch.no_grad(): w = self.base(x)
        for _ in range(iters):
            w = w + self.corr(torch.cat([x, self.G(w)], 1))
        return w
if __name__ == '__main__':
    steps, out = int(sys.argv[1]), sys.argv[2]; lr0 = 1e-3
    torch.set_num_threads(2); torch.manual_seed(0)
    b = faces64_bundle(); G = b.build_generator(); G.requires_grad_(False)
    E = Restyle(b.build_encoder(), G); E.base.requires_grad_(False)
    idl = IdentityLoss(); rng = np.random.default_rng(0); trng = torch.Generator().manual_seed(0)
    E.train(); E.base.eval()
    opt = torch.optim.AdamW(E.corr.parameters(), lr=lr0, weight_decay=1e-4)
    t0 = time.perf_counter()
    for step in range(steps):
        opt.param_groups[0]['lr'] = lr_at(step, steps, lr0, 10)
        z, x = sample_faces(G, 48, trng); xin = camera_crop(x, rng)
        w = E(xin); xh = G(w); lc = F.mse_loss(w, z); lp = F.l1_loss(xh, x)
        with torch.no_grad(): t = idl.embed(x[:16])
        li = idl(xh[:16], t).mean(); loss = lc + lp + li
        opt.zero_grad(); loss.backward(); opt.step()
        if step % 20 == 0: print(step, round(lc.item(),3), round(lp.item(),3), round(li.item(),3), round(time.perf_counter()-t0), flush=True)
    E.eval()
    with replacing_file(Path(out)) as handle:  # atomic
        torch.save(E.corr.state_dict(), handle)
