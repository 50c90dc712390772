"""The README's results tables, generated from data/results/*.json (the benchmarks write those files).

    python scripts/results_table.py            # print the tables
    python scripts/results_table.py --write    # replace the block between the README's results markers
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from anyref.paths import RESULTS_DIR

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- results:begin (scripts/results_table.py) -->", "<!-- results:end -->"
SPLITS = ("val", "testA", "testB")


def read(name: str) -> dict | None:
    """One results JSON, or None when the benchmark has not been run."""
    path = RESULTS_DIR / name
    return json.loads(path.read_text()) if path.exists() else None


def mark(value: float, target: float | None) -> str:
    """A figure with a tick or a cross against its target."""
    if target is None:
        return f"{value:.3f}"
    return f"{value:.3f} {'✓' if value >= target else '✗'} (≥ {target:.2f})"


def ingredient_rows() -> list[str]:
    """CLIP-mini, SAM-mini, audio-mini, LLaVA-mini and the probes of their features."""
    bench, probes = read("ingredients_mini.json"), read("ingredient_probes.json")
    rows = ["| ingredient | measure (held out) | figure |", "|---|---|---|"]
    if bench:
        figures, targets = bench["figures"], bench["targets"]
        names = {"clip_zero_shot_top1": ("CLIP-mini", "zero-shot top-1 on object crops"),
                 "sam_box_miou": ("SAM-mini", "box-prompt mIoU"), "sam_point_miou": ("SAM-mini", "point-prompt mIoU"),
                 "audio_retrieval_top1": ("audio-mini", "audio → image retrieval top-1"),
                 "audio_mixture_top2": ("audio-mini", "two-shape mixtures: both shapes the two nearest")}
        for key, (who, what) in names.items():
            if key in figures:  # records written before a figure existed lack it
                rows.append(f"| {who} | {what} | {mark(figures[key], targets.get(key))} |")
        for kind in ("colour", "shape", "where", "count"):
            key = f"llava_{kind}"
            if key in figures:
                rows.append(f"| LLaVA-mini | exact-match answers, {kind} questions | {mark(figures[key], targets.get(key))} |")
    if probes:
        clip, goal = probes["clip_centre_probe"], probes["targets"]
        rows.append(f"| CLIP-mini | probe at object centres in whole scenes: shape | "
                    f"{mark(clip['shape'], goal['clip_centre_shape'])} |")
        rows.append(f"| CLIP-mini | probe at object centres in whole scenes: colour | "
                    f"{mark(clip['colour'], goal['clip_centre_colour'])} |")
        rows.append(f"| image tokens the LLM sees | grid position, linear probe R² | "
                    f"{mark(probes['image_token_position_r2'], goal['image_token_position_r2'])} |")
    return rows


def text_rows() -> list[str]:
    """The shipped text-referring model beside the segment-everything floor of each split."""
    text = read("text_referring_mini.json")
    if not text:
        return []
    floor = {split: text["floor"][split]["ciou"] for split in SPLITS} if "floor" in text else {}
    rows = ["| run | steps (in all) | train wall s (in all) | cIoU val / testA / testB | floor val / testA / testB |",
            "|---|---|---|---|---|"]
    for label, run in text["runs"].items():
        scores = " / ".join(f"{run['scores'][s]['ciou']:.3f}" for s in SPLITS)
        floors = " / ".join(f"{floor[s]:.3f}" for s in SPLITS) if floor else "-"
        name = f"**{label}** (shipped)" if run.get("shipped") else label
        steps = run.get("total_train_steps", run["train_steps"])  # a run that continued another counts both
        wall = run.get("total_train_wall_s", run["train_wall_s"])
        rows.append(f"| {name} | {steps} | {wall:.0f} | {scores} | {floors} |")
    return rows


def obj_rows() -> list[str]:
    """What the shipped text model's `<obj>` embedding knows (linear probes), and whether its answers restate."""
    probes, text = read("obj_probes.json"), read("text_referring_mini.json")
    if not probes:
        return []
    obj, goal = probes["obj_embedding"], probes["targets"]
    llm = probes.get("obj_embedding_from_the_llm")  # present with locator feedback: gamma reads more than `<obj>`
    which = f"γ's input, `<obj>` + what the locator found ({probes['samples']} samples)" if llm else \
        f"{probes['samples']} samples"
    rows = ["| `<obj>` embedding of the shipped text model | measure (val, 30 % held out) | figure |", "|---|---|---|"]
    for key, what in (("colour_accuracy", "target's colour, probe accuracy"),
                      ("shape_accuracy", "target's shape, probe accuracy"), ("centre_r2", "target's centre, R²")):
        rows.append(f"| {which} | {what} | {mark(obj[key], goal[key])} |")
    for name in ("colour", "size"):  # the embedding holds what the words say: split by whether they say it
        if f"{name}_accuracy_when_named" in obj:
            rows.append(f"| {which} | target's {name}, when the expression names it "
                        f"({obj[f'{name}_share_named_in_expression']:.0%} of them) / when it does not | "
                        f"{obj[f'{name}_accuracy_when_named']:.3f} / {obj[f'{name}_accuracy_when_not_named']:.3f} |")
    if llm:
        rows.append(f"| the LLM's refocused `<obj>` alone | target's colour / centre R² | "
                    f"{llm['colour_accuracy']:.3f} / {llm['centre_r2']:.3f} |")
    if probes.get("locator_top_cell_on_target") is not None:
        rows.append(f"| {probes['samples']} samples | the locator's top cell lies on the target (teacher-forced) | "
                    f"{probes['locator_top_cell_on_target']:.3f} |")
    shipped = [run for run in (text or {}).get("runs", {}).values() if run.get("shipped")]
    restates = shipped[0]["scores"]["val"].get("answer_restates_expression") if shipped else None
    if restates is not None:
        rows.append(f"| answers | the answer equals the expression (val) | {mark(restates, 0.90)} |")
    return rows


def task_rows() -> list[str]:
    """The shipped task-mixture model, one row per task, beside the segment-everything floor."""
    tasks = read("tasks_mini.json")
    if not tasks:
        return []
    s, floor = tasks["scores"], tasks["baseline_all_objects"]
    rows = ["| task (mixture model) | measure | figure | segment everything |", "|---|---|---|---|"]
    for split in SPLITS:
        rows.append(f"| text referring, {split} | cIoU | {s['text'][split]['ciou']:.3f} | {floor['text_ciou'][split]:.3f} |")
    rows.append(f"| REG | exact match / CIDEr / METEOR | {s['reg']['exact_match']:.3f} / {s['reg']['cider']:.2f} / "
                f"{s['reg']['meteor']:.3f} | - |")
    rows.append(f"| example image, one shot | mIoU | {s['image']['one_shot']['miou']:.3f} | "
                f"{floor['image_one_shot_miou']:.3f} |")
    for kind, key in (("single", "single_source"), ("multi", "multi_source")):
        a = s["audio"][key]
        rows.append(f"| audio, {kind} source | mIoU / F (AVSBench) | {a['miou']:.3f} / {a['fscore']:.3f} | "
                    f"{floor[f'audio_{kind}_miou']:.3f} (mIoU) |")
    steps = tasks.get("total_train_steps", tasks["train_steps"])
    wall = tasks.get("total_train_wall_s", tasks["train_wall_s"])
    runs = len(tasks.get("previous_runs", [])) + 1
    rows.append(f"| (run) | | {tasks.get('recipe', 'paper')} recipe{', locator' if tasks.get('locator') else ''}, "
                f"{steps} steps{f' in {runs} runs' if runs > 1 else ''}, {wall:.0f} s, "
                f"{tasks['eval_samples_per_task']} samples per task | |")
    return rows


def tables() -> str:
    """All tables as one markdown block."""
    parts = [ingredient_rows(), text_rows(), obj_rows(), task_rows()]
    return "\n\n".join("\n".join(rows) for rows in parts if rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the README block between {BEGIN} and {END}")
    args = parser.parse_args()
    block = tables()
    if not args.write:
        print(block)
        return
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no results markers; add the lines {BEGIN!r} and {END!r} where the tables go")
    head, rest = text.split(BEGIN, 1)
    README.write_text(head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
