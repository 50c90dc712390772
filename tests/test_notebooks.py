"""Every course notebook is committed clean, runs end to end at its default parameters (papermill), and every
notebook that the course mentions exists."""
import json
import re

import pytest

from anyref.course import NOTEBOOKS_DIR, execute, notebooks
from anyref.paths import REPO_ROOT

NOTEBOOKS = notebooks()


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_with_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "commit notebooks without outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "each notebook needs exactly one cell tagged 'parameters'"
    assert "figures_dir" in "".join(tagged[0]["source"])
    ids = [c.get("id") for c in nb["cells"]]  # nbformat 4.5 requires them; papermill warns without
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs its own id (nbformat.validator.normalize)"


def _mentioned_notebooks(text: str) -> set[str]:
    """Every NN in "notebook NN", "notebooks NN and MM", "notebooks NN-MM" (ranges expanded)."""
    found = set()
    for match in re.finditer(r"\b[Nn]otebooks?\s+(\d{2}(?:\s*(?:-|–|,|and|or)\s*\d{2})*)", text):
        numbers = [int(n) for n in re.findall(r"\d{2}", match.group(1))]
        for low, high in re.findall(r"(\d{2})\s*[-–]\s*(\d{2})", match.group(1)):
            numbers += range(int(low), int(high) + 1)
        found |= {f"{n:02d}" for n in numbers}
    return found


def test_every_mentioned_notebook_exists():
    texts = {path.name: "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
             for path in NOTEBOOKS}
    for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "course").rglob("*.md"))]:
        if path.exists():
            texts[str(path.relative_to(REPO_ROOT))] = path.read_text()
    missing = {name: sorted(n for n in _mentioned_notebooks(text) if not list(NOTEBOOKS_DIR.glob(f"{n}_*.ipynb")))
               for name, text in texts.items()}
    dangling = {name: numbers for name, numbers in missing.items() if numbers}
    assert not dangling, f"mentions of notebooks that do not exist: {dangling}"
    assert _mentioned_notebooks("notebooks 03-05 and notebook 12") == {"03", "04", "05", "12"}


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    executed = execute(path, tmp_path)
    nb = json.loads(executed.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert list((tmp_path / "figures").glob("*.png")), "the notebook should save its figures"
