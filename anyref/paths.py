"""Where the repository keeps shipped weights, results and build outputs."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
MODELS_DIR = DATA_DIR / "models"
RESULTS_DIR = DATA_DIR / "results"
BUILD_DIR = REPO_ROOT / "build"
TEXT_MODEL_DIR = MODELS_DIR / "anyref-mini-text"
