"""Diagnostic: what do a trained model's `<obj>` embeddings know about the object they should segment?

Linear probes (fit on 70 % of the samples, scored on the rest) from the refocused `<obj>` embedding of teacher-forced
text-referring samples to the target's colour and shape (also written in the expression, so easy) and to its centre
(only visible in the image: the model must have looked). Writes data/results/obj_probe_<model>.json."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from anyref import AnyRefModel
from anyref.batching import collate
from anyref.data import split_samples
from anyref.paths import MIXTURE_MODEL_DIR, RESULTS_DIR
from anyref.provenance import commit


def embeddings(model, samples, *, batch_size: int = 8) -> np.ndarray:
    """Refocused `<obj>` embeddings (N, D) of teacher-forced samples (one `<obj>` each)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            batch = collate(samples[start:start + batch_size], model.tokenizer, max_tokens=model.config.max_text_tokens)
            out.append(model(batch)["obj_embeddings"].numpy())
    return np.concatenate(out)  # (N, D)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(MIXTURE_MODEL_DIR))
    parser.add_argument("--num", type=int, default=400)
    args = parser.parse_args()
    model = AnyRefModel.from_pretrained(args.model).eval()
    samples = [s for s in split_samples("val", num=args.num) if len(s.targets) == 1]
    X = embeddings(model, samples)
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    objects = [s.scene.objects[s.targets[0]] for s in samples]
    split = int(0.7 * len(samples))
    scores = {}
    for name in ("colour", "shape", "size"):
        y = np.array([getattr(o, name) for o in objects])
        scores[f"{name}_accuracy"] = LogisticRegression(max_iter=3000).fit(X[:split], y[:split]).score(X[split:], y[split:])
    centre = np.array([o.centre for o in objects])  # (N, 2) pixels
    ridge = Ridge(alpha=1.0).fit(X[:split], centre[:split])
    error = np.abs(ridge.predict(X[split:]) - centre[split:]).mean()
    scores["centre_r2"] = ridge.score(X[split:], centre[split:])
    scores["centre_mean_abs_error_px"] = float(error)
    scores["centre_mean_abs_error_px_predicting_the_mean"] = float(np.abs(centre[:split].mean(0) - centre[split:]).mean())
    report = {"model": args.model, "commit": commit(), "samples": len(samples), "test_fraction": 0.3, "scores": scores}
    out = RESULTS_DIR / f"obj_probe_{Path(args.model).name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
