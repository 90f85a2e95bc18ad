# timm's eager train step at w192 under torch.profiler: operators by self CPU time.
import torch
from timm.models.vision_transformer import VisionTransformer

torch.set_num_threads(2)
torch.manual_seed(0)
model = VisionTransformer(
    img_size=32, patch_size=4, embed_dim=192, depth=9, num_heads=12, mlp_ratio=2.0, num_classes=10
)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
lf = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
x = torch.rand(128, 3, 32, 32)
y = torch.randint(0, 10, (128,))


def step():
    loss = lf(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


for _ in range(3):
    step()
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(4):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
