"""Run every course notebook with papermill at its default (fast, CPU) parameters: `python -m anyref.course`."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .paths import BUILD_DIR, REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def notebooks(pattern: str = "*.ipynb") -> list[Path]:
    """The course notebooks, in syllabus order."""
    return sorted(NOTEBOOKS_DIR.glob(pattern))


def execute(notebook: Path, out_dir: Path, **parameters) -> Path:
    """Execute one notebook into out_dir (figures go to out_dir/figures); returns the executed copy."""
    import papermill

    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    target = out_dir / notebook.name
    papermill.execute_notebook(str(notebook), str(target), parameters={"figures_dir": str(figures), **parameters},
                               cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    return target


def main(argv: list[str] | None = None) -> int:
    """Execute all notebooks; print each one's time and where outputs are."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(BUILD_DIR / "course"))
    parser.add_argument("--only", default="*.ipynb", help="glob of notebooks to run")
    args = parser.parse_args(argv)
    out_dir = Path(args.out).resolve()
    began = time.perf_counter()
    for notebook in notebooks(args.only):
        start = time.perf_counter()
        print(f"running {notebook.name} ...", flush=True)
        execute(notebook, out_dir)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"all notebooks ran in {time.perf_counter() - began:.0f} s")
    print(f"executed notebooks: {out_dir}\nfigures: {out_dir / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
