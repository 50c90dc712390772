"""Where the lab keeps its results: research/results (attempts that led nowhere in research/results/attempts)."""
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ATTEMPTS = RESULTS / "attempts"
