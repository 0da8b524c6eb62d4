"""docs/MODELS.md must describe the configs as they are (regenerate it with
`python benchmarks/model_table.py` after changing a model config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from texlens.models.summary import HEADER, build, model_configs

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "MODELS.md"
N_STATIC = HEADER.count("|") - 1  # the deterministic columns


def page_rows() -> dict[str, list[str]]:
    rows = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[:N_STATIC]
    return rows


def test_page_lists_every_model_config() -> None:
    assert PAGE.read_text(encoding="utf-8").count(HEADER) == 1
    configs = {str(p.relative_to(ROOT)) for p in model_configs(ROOT)}
    assert set(page_rows()) == configs, "docs/MODELS.md: run benchmarks/model_table.py"


@pytest.mark.parametrize("path", model_configs(ROOT), ids=lambda p: p.stem)
def test_page_row_matches_config(path: Path) -> None:
    summary, _ = build(path, ROOT)
    row = page_rows().get(summary.config)
    assert row is not None, f"{summary.config} missing from docs/MODELS.md"
    assert row == summary.cells(), "docs/MODELS.md is stale: run benchmarks/model_table.py"
