"""Scores printed as the paper's tables: a caption, column groups over columns, one row per method."""
from __future__ import annotations


def render(caption: str, groups: list[tuple[str, list[str]]], rows: list[tuple[str, list[str]]]) -> str:
    """A plain-text table: the caption, a line of column groups, a line of columns, then the rows."""
    columns = [column for _, names in groups for column in names]
    widths = [max(7, len(column), *(len(values[i]) for _, values in rows)) for i, column in enumerate(columns)]
    first = max(len("Method"), *(len(method) for method, _ in rows))
    group_cells, start = [], 0
    for group, names in groups:
        span = sum(widths[start:start + len(names)]) + 2 * (len(names) - 1)
        group_cells.append(group.center(span))
        start += len(names)
    lines = [caption, " " * first + "  " + "  ".join(group_cells),
             "Method".ljust(first) + "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += [method.ljust(first) + "  " + "  ".join(v.rjust(w) for v, w in zip(values, widths))
              for method, values in rows]
    return "\n".join(line.rstrip() for line in lines)


def _percent(value) -> str:
    """A fraction as the paper prints it: percent with one decimal ('-' when not measured)."""
    return "-" if value is None else f"{100 * value:.1f}"


def referring_table(title: str, method: str, scores: dict) -> str:
    """Table 2's shape: cIoU per split (gIoU in a second row)."""
    splits = list(scores)
    return render("Referring expression segmentation (cIoU, %; gIoU in the second row)", [(title, splits)],
                  [(method, [_percent(scores[s]["ciou"]) for s in splits]),
                   ("  gIoU", [_percent(scores[s]["giou"]) for s in splits])])


def reg_table(title: str, method: str, scores: dict) -> str:
    """Table 5's shape: METEOR and CIDEr (x100) per split."""
    groups = [(f"{title} {split}", ["Meteor", "CIDEr"]) for split in scores]
    values = [_percent(v) for s in scores.values() for v in (s["meteor"], s["cider"])]
    return render("Region-level referring expression generation", groups, [(method, values)])


def avs_table(title: str, method: str, scores: dict) -> str:
    """Table 4's shape: mIoU (%) and F-score per split."""
    groups = [(title if split == "test" else f"{title} {split}", ["mIOU", "F-score"]) for split in scores]
    values = [v for s in scores.values() for v in (_percent(s["miou"]), f"{s['fscore']:.3f}")]
    return render("Audio-visual segmentation", groups, [(method, values)])


def fewshot_table(title: str, method: str, scores: dict) -> str:
    """Table 3's shape: one-shot and few-shot mIoU (%); the dagger row crops supports with their masks."""
    settings = [name for name in ("one_shot", "few_shot") if name in next(iter(scores.values()))]
    groups = [(title if split == "val" else f"{title} {split}", [s.replace("_", "-") for s in settings])
              for split in scores]
    rows = [(method + mark, [_percent(s[f"{name}{suffix}"]["miou"]) for s in scores.values() for name in settings])
            for mark, suffix in (("", ""), (" †", "_mask_crop"))]
    return render("Example-based few-shot segmentation (mIoU, %; † = mask-cropped examples)", groups, rows)


TABLES = {"referring": referring_table, "reg": reg_table, "avs": avs_table, "fewshot": fewshot_table}
