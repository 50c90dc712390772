"""Where a measured figure came from: the code's commit and the machine, for benchmark JSON files."""
from __future__ import annotations

import os
import platform
import subprocess

import torch

from .paths import REPO_ROOT


def commit() -> str:
    """The git commit of the code being measured (with '+dirty' when uncommitted changes exist)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "anyref", "scripts"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def machine() -> str:
    """CPU architecture, core count and torch version."""
    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}"
