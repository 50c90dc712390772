"""The real benchmarks' file formats: readers into the project's samples, exporters from ShapeScenes, and the
`anyref eval --data FORMAT:ROOT` command.

refer.py: RefCOCO / RefCOCO+ / RefCOCOg (REFER layout); regcaption.py: their region captions (REG);
avsbench.py: AVSBench S4 / MS3; fewshot.py: PASCAL-5i / COCO-20i folds; safe_pickle.py: the restricted unpickler;
common.py: shared file checks and the AnyRefDataError they raise; tables.py and evaluate_cli.py: the command.
"""
