"""Where the repository keeps shipped weights, results and build outputs."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
MODELS_DIR = DATA_DIR / "models"
RESULTS_DIR = DATA_DIR / "results"
BUILD_DIR = REPO_ROOT / "build"
TEXT_MODEL_DIR = MODELS_DIR / "anyref-mini-text"
MIXTURE_MODEL_DIR = MODELS_DIR / "anyref-mini"  # trained on every task (scripts/benchmark_tasks.py)
INGREDIENTS_DIR = DATA_DIR / "ingredients"
DATA_PREFIX = "data:"  # config paths starting with this are relative to the repository's data/ folder


def resolve(path: str | Path) -> Path:
    """A config path as a real path: "data:ingredients/clip-mini" -> <repo>/data/ingredients/clip-mini."""
    text = str(path)
    return DATA_DIR / text[len(DATA_PREFIX):] if text.startswith(DATA_PREFIX) else Path(text).expanduser()
