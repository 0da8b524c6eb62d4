"""How much of the real-formula corpus texlens.latex.normalize reads, and what it makes of it.

    python benchmarks/normalize_corpus.py [--root ../shared/data/formulas] [--workers 2]
        [--limit N] [--top 50]

Prints, per file: formulas, share normalised without error, idempotence failures
(normalize(" ".join(tokens)) != tokens; must be 0); then the most common error reasons,
the token vocabulary size and the most frequent tokens over all files.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

from texlens.latex import LatexError, normalize


def check(line: str) -> tuple[list[str] | None, str | None, bool]:
    """(tokens or None, error reason or None, idempotent)."""
    try:
        toks = normalize(line)
    except LatexError as e:
        return None, str(e), True
    try:
        again = normalize(" ".join(toks))
    except LatexError:
        return toks, None, False
    return toks, None, again == toks


def reason(message: str) -> str:
    """An error message without its position and formula, to count alike errors together."""
    message = message.split(" (at character")[0]
    message = re.sub(r"^cannot parse .*?: ", "cannot parse: ", message, flags=re.S)
    return re.sub(r"@\(\d+,\d+\)", "", message).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]
                                          / "shared/data/formulas"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N lines of each file (0: all)")
    ap.add_argument("--top", type=int, default=50)
    args = ap.parse_args()
    root = Path(args.root)
    files = sorted(root.glob("books/*.txt")) + sorted(root.glob("*.txt"))
    if not files:
        raise SystemExit(f"no formula files under {root}")
    tokens: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    total = ok = 0
    print(f"{'file':34s} {'formulas':>9s} {'normalised':>10s} {'not idempotent':>15s}")
    with Pool(max(1, min(args.workers, 2))) as pool:
        for path in files:
            lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            if args.limit:
                lines = lines[:args.limit]
            n_ok = n_bad = 0
            for line, (toks, err, idem) in zip(lines, pool.imap(check, lines, chunksize=64),
                                               strict=True):
                if toks is not None:
                    n_ok += 1
                    tokens.update(toks)
                    if not idem:
                        n_bad += 1
                        examples.setdefault("not idempotent", line)
                else:
                    errors[reason(err)] += 1
                    examples.setdefault(reason(err), line)
            total += len(lines)
            ok += n_ok
            name = str(path.relative_to(root))
            print(f"{name:34s} {len(lines):9d} {n_ok / max(1, len(lines)):10.1%} {n_bad:15d}")
    print(f"{'all':34s} {total:9d} {ok / max(1, total):10.1%}")
    print(f"\ntop error reasons ({sum(errors.values())} errors):")
    for r, c in errors.most_common(15):
        print(f"{c:7d}  {r[:90]}\n         e.g. {examples[r][:100]}")
    if "not idempotent" in examples:
        print(f"\nnot idempotent, e.g. {examples['not idempotent'][:150]}")
    print(f"\nvocabulary: {len(tokens)} tokens")
    print(f"{args.top} most frequent: "
          + " ".join(f"{t}:{c}" for t, c in tokens.most_common(args.top)))


if __name__ == "__main__":
    main()
