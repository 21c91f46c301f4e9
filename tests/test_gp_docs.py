"""The env docs pages (GeneralPoints, V-IRL) are generated from the code and committed in sync."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_builder():
    spec = importlib.util.spec_from_file_location(
        "build_env_docs", ROOT / "docs" / "build_env_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_env_page_is_in_sync_with_the_code():
    pages = load_builder().build()
    assert ROOT / "docs" / "envs" / "generalpoints.md" in pages, sorted(pages)
    assert {path.name for path in pages} >= {"generalpoints.md", "virl.md"}
    for path, text in pages.items():
        assert path.read_text() == text, f"stale {path.name}: run python docs/build_env_docs.py"


def test_page_is_built_from_registry_docstring_and_variants():
    builder = load_builder()
    text = builder.build()[ROOT / "docs" / "envs" / "generalpoints.md"]
    assert (
        '| `GeneralPoints-L-v0` | `gym_generalpoints.env:GeneralPointsEnv` | `mode="L"` |' in text
    )
    assert (
        "### Action Space" in text and "### Version History" in text
    )  # demoted docstring sections
    assert '| `visual-ood` | `GeneralPoints-VL-v0` | `suit_colors="red"` |' in text
    assert "gym_generalpoints.wrappers.RuleVariant" in text


def test_check_mode_reports_stale_and_missing_pages(tmp_path, capsys):
    builder = load_builder()
    assert builder.main(["--check", "--out-dir", str(tmp_path)]) == 1
    assert builder.main(["--out-dir", str(tmp_path)]) == 0
    assert builder.main(["--check", "--out-dir", str(tmp_path)]) == 0
    page = tmp_path / "generalpoints.md"
    page.write_text(page.read_text().replace("GeneralPoints", "GenPts", 1))
    assert builder.main(["--check", "--out-dir", str(tmp_path)]) == 1
    assert "stale" in capsys.readouterr().out


def test_families_that_are_missing_or_empty_are_skipped(monkeypatch):
    builder = load_builder()
    monkeypatch.setattr(
        "gengym_core.registry.ENV_PACKAGES", ("gym_generalpoints", "gym_not_written_yet")
    )
    families, notes = builder.discover()
    assert list(families) == ["gym_generalpoints"]
    assert any("gym_not_written_yet" in note for note in notes)
