"""Lab: what LLaVA-mini gets wrong when asked "where is ...?".

For held-out "where" questions (`llava_mini.heldout_questions`, those `answer_accuracy` scores), sorts the answers
by how far their cell of the 3 x 3 grid lies from the true one: right, one step off (a neighbouring row or column),
two steps, farther, or not a cell at all. If the misses are mostly one step off, the model finds the object but
places it coarsely; if they spread, it did not find the object. Writes research/results/llava_where_errors.json.

    python research/llava_where_errors.py [--num 200]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from anyref.data.language import COLUMNS, ROWS
from anyref.pretrain import llava_mini
from anyref.pretrain.run import folder_of
from anyref.provenance import commit, machine
from lab import RESULTS


def cell_steps(answer: str, truth: str) -> int | None:
    """Rows plus columns between two "row column" answers; None when `answer` names no cell."""
    words = answer.split()
    if len(words) != 2 or words[0] not in ROWS or words[1] not in COLUMNS:
        return None
    row, column = truth.split()
    return abs(ROWS.index(words[0]) - ROWS.index(row)) + abs(COLUMNS.index(words[1]) - COLUMNS.index(column))


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200, help="held-out where questions")
    args = parser.parse_args()
    began = time.perf_counter()
    model = llava_mini.load_llava_mini(folder_of("llava"), clip_folder=folder_of("clip"))
    counts = {"right": 0, "one_step_off": 0, "two_steps_off": 0, "farther": 0, "not_a_cell": 0}
    for scene, q, truth in llava_mini.heldout_questions("where", num=args.num):
        steps = cell_steps(model.generate(torch.from_numpy(scene.image), q, max_new_tokens=4).text, truth)
        name = "not_a_cell" if steps is None else ("right", "one_step_off", "two_steps_off")[steps] if steps < 3 \
            else "farther"
        counts[name] += 1
    record = {"what": "LLaVA-mini's answers to held-out where questions, by distance from the true cell",
              "questions": args.num, "shares": {k: v / args.num for k, v in counts.items()},
              "wall_s": round(time.perf_counter() - began, 1), "commit": commit(), "machine": machine()}
    out = RESULTS / "llava_where_errors.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["shares"]), "->", out)


if __name__ == "__main__":
    main()
