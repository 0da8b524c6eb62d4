"""Train each variant config on the same short budget, then score all on one validation set.

    python benchmarks/compare_variants.py [--jobs 2] [--configs A.yaml B.yaml ...]
        [--data data/printed/val-real] [--out runs/variants/table.md] [--retrain]

Each config trains with ``texlens train`` into its own train.out_dir (``--jobs`` runs
side by side; the variant configs use one thread each so two share the two cores).
A config whose out_dir already holds model.pt is not retrained unless ``--retrain``.
Every exported model is then evaluated greedily with ``texlens evaluate`` and the
table (sentence accuracy, ExpRate <=1, WER, parameters, training minutes) is printed
and written as markdown. Training minutes are wall time, with the other jobs running.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texlens.checkpoint import load_model  # noqa: E402
from texlens.config import load_config  # noqa: E402

DEFAULT = ["satrn-linear", "satrn-conv-ffn", "satrn-adaptive-pe", "satrn-cbam", "satrn-untied",
           "satrn-tf-cosine", "aster", "vit"]
TEXLENS = [sys.executable, "-m", "texlens.cli"]


def train_one(config: Path, retrain: bool) -> float | None:
    """Wall minutes spent training, or None if an exported model was already there."""
    out = Path(load_config(config).train.out_dir)
    if (out / "model.pt").is_file() and not retrain:
        return None
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "train.log", "w", encoding="utf-8") as log:
        subprocess.run([*TEXLENS, "train", str(config)], check=True, stdout=log,
                       stderr=subprocess.STDOUT, cwd=ROOT)
    minutes = (time.perf_counter() - t0) / 60
    (out / "train_minutes.txt").write_text(f"{minutes:.1f}\n")
    return minutes


def evaluate(model: Path, data: str) -> dict:
    out = model.with_name("val.json")
    subprocess.run([*TEXLENS, "evaluate", "--model", str(model), "--data", data,
                    "--json", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*",
                    default=[f"configs/variants/{n}.yaml" for n in DEFAULT])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--data", default="data/printed/val-real")
    ap.add_argument("--out", default="runs/variants/table.md")
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    configs = [ROOT / c for c in args.configs]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda c: train_one(c, args.retrain), configs))
    lines = ["| config | sentence acc | ExpRate <=1 | WER | parameters | steps | train min |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for c in configs:
        cfg = load_config(c)
        out = ROOT / cfg.train.out_dir
        model, _, _ = load_model(out / "model.pt")
        r = evaluate(out / "model.pt", args.data)
        minutes = (out / "train_minutes.txt").read_text().strip()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        lines.append(f"| `{c.relative_to(ROOT)}` | {100 * r['sentence_acc']:.1f} | "
                     f"{100 * r['exprate_le1']:.1f} | {r['wer']:.3f} | {params:.2f} M | "
                     f"{cfg.train.max_steps} | {minutes} |")
        print(lines[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
