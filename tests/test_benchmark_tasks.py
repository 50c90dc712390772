"""scripts/benchmark_tasks.py: a model trained in two runs records both, and its totals count both."""
import importlib.util
import json

from anyref.paths import REPO_ROOT

_spec = importlib.util.spec_from_file_location("benchmark_tasks", REPO_ROOT / "scripts" / "benchmark_tasks.py")
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_previous_runs_chain_oldest_first(tmp_path):
    first = {"commit": "aaa", "train_steps": 100, "train_wall_s": 10.0, "recipe": "full-llm", "init_from": None,
             "audio_from": None, "mixture": {"text": 1.0}, "lr": 1e-3, "warmup_steps": 10, "scores": {"ignored": 1}}
    (tmp_path / "first.json").write_text(json.dumps(first))
    chain = benchmark.previous_runs(tmp_path / "first.json")
    assert chain == [{key: first[key] for key in chain[0]}] and "scores" not in chain[0]
    second = {**first, "commit": "bbb", "train_steps": 50, "init_from": "models/first", "audio_from": "audio-mini",
              "previous_runs": chain}
    (tmp_path / "second.json").write_text(json.dumps(second))
    runs = benchmark.previous_runs(tmp_path / "second.json")
    assert [(run["commit"], run["audio_from"]) for run in runs] == [("aaa", None), ("bbb", "audio-mini")]
