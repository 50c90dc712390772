"""LLaVA-mini: a small Llama pretrained on ShapeScenes text, then LLaVA's stages in miniature.

LLaVA (Liu et al., 2023) starts from a pretrained LLM (Vicuna) and a frozen CLIP: stage 1 trains only the projector
on image captions ("feature alignment"); stage 2 trains projector + LLM on instructions. AnyRef starts from that
model. Here: stage 0 pretrains the Llama as a language model on ShapeScenes captions, stage 2 tunes projector and
LLM on conversations about colour, shape, position and count. Stage 1 is implemented ("align") but the miniature's
recipe skips it (RECIPE_STAGES): against a small LLM it pushed the image tokens together (mean cosine 0.46 -> 0.74).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..config import MINI_IMAGE_SIZE, MINI_POSITION_AMPLITUDE, AnyRefConfig, LLMConfig, TrainableConfig, VisionConfig
from ..data import make_scene
from ..data.language import QUESTION_KINDS, conversation, question, scene_caption
from ..data.shapescenes import MAX_OBJECTS
from ..errors import AnyRefCheckpointError
from ..losses import text_loss
from ..model import AnyRefModel, Batch
from ..tokens import IGNORE_INDEX, encode_conversation, pad_batch
from .loop import run_loop, scene_rng
from .store import fresh_folder, ingredient_dir

TRAIN_STREAM, HELDOUT_STREAM = 41, 42
SCENE_SIZE = MINI_IMAGE_SIZE  # ShapeScenes' default; the vision tower resizes to its own input size
STAGES = ("lm", "align", "instruct")
RECIPE_STAGES = ("lm", "instruct")  # the miniature's recipe: no alignment stage (module docstring)
CAPTION_QUESTION = "describe the image briefly."
LLM_DIR, PROJECTOR_FILE, TOKENIZER_DIR, METRICS_FILE = "llm", "projector.safetensors", "tokenizer", "metrics.json"


@dataclass
class LLaVAPretrainConfig:
    """Steps, batch sizes and learning rates of the three stages."""

    lm_steps: int = 200
    lm_batch: int = 32
    lm_lr: float = 3e-3
    align_steps: int = 150
    align_batch: int = 16
    align_lr: float = 3e-3
    instruct_steps: int = 15000  # at 5e-4, answers still rose from 6000 to 15000 steps (research/README.md)
    instruct_batch: int = 16
    instruct_lr: float = 5e-4  # 2e-3 plateaued near 0.40 of answers right; 5e-4 and 2.5e-4 reached 0.69-0.72 in 6000
    instruct_turns: int = 4  # questions per image, one conversation (LLaVA-Instruct's are multi-turn)
    curriculum_steps: int = 0  # instruction scenes grow from one object to ShapeScenes' full range over these steps
    seed: int = 0


def llava_config(*, clip_path: str | None, vision: VisionConfig | None = None, llm: LLMConfig | None = None,
                 stage: str) -> AnyRefConfig:
    """An AnyRef config used as LLaVA, full LLM (no LoRA); trains the LLM at "lm", the projector at "align", both at
    "instruct"."""
    vision = vision or VisionConfig(position_amplitude=MINI_POSITION_AMPLITUDE)
    vision.pretrained_path = clip_path
    trains_llm = stage in ("lm", "instruct")
    trainable = TrainableConfig(projector=stage != "lm", llm_full=trains_llm, token_embeddings=trains_llm,
                                mask_decoder=False, obj_mlp=False)
    return AnyRefConfig(preset="llava-mini", vision=vision, llm=llm or LLMConfig(use_lora=False), trainable=trainable)


def lm_sentence(rng: np.random.Generator, image_size: int) -> str:
    """One ShapeScenes sentence for the language-model stage: a scene caption.

    Only captions: "question answer ." sentences trained a blind question answerer whose confident guesses the
    instruction stage then had to unlearn (loss 6.5 at its start, against 4.5 from a fresh Llama). A caption teaches
    the words and their order; which objects a scene holds cannot be guessed without the image.
    """
    return scene_caption(make_scene(rng, image_size=image_size))


@torch.no_grad()
def image_token_similarity(model: AnyRefModel, *, num: int = 16) -> float:
    """Mean cosine between different image tokens of one held-out scene (1.0: the projector collapsed them)."""
    rng = scene_rng(HELDOUT_STREAM, 99)
    images = torch.from_numpy(np.stack([make_scene(rng, image_size=SCENE_SIZE).image for _ in range(num)]))
    tokens = torch.nn.functional.normalize(model.image_tokens(images), dim=-1)  # (N, P, D)
    cosine = tokens @ tokens.transpose(1, 2)  # (N, P, P)
    count = cosine.shape[1]
    return float((cosine.sum((1, 2)) - count).mean() / (count * (count - 1)))


def chat_batch(model: AnyRefModel, scenes, conversations) -> Batch:
    """(scene, [(question, answer), ...]) -> a teacher-forced Batch without masks."""
    ids, labels = zip(*(encode_conversation(model.tokenizer, turns, max_tokens=model.config.max_text_tokens)
                        for turns in conversations))
    return Batch(input_ids=pad_batch(list(ids), value=model.ids.pad),
                 attention_mask=pad_batch([[1] * len(x) for x in ids], value=0),
                 labels=pad_batch(list(labels), value=IGNORE_INDEX),
                 images=torch.from_numpy(np.stack([s.image for s in scenes])), masks=[None] * len(scenes))


def curriculum_objects(step: int, curriculum_steps: int) -> dict[str, int]:
    """make_scene's object-count range at an instruction step: one object at first, then one more every
    curriculum_steps / MAX_OBJECTS steps, up to ShapeScenes' own range (2-6 objects) from curriculum_steps on."""
    if step >= curriculum_steps:
        return {}
    return {"min_objects": 1, "max_objects": 1 + step * MAX_OBJECTS // curriculum_steps}


def _stage_batch(model, stream_keys, size: int, *, kind: str, turns: int = 1, objects: dict | None = None) -> Batch:
    rng = scene_rng(TRAIN_STREAM, *stream_keys)
    scenes = [make_scene(rng, image_size=SCENE_SIZE, **(objects or {})) for _ in range(size)]
    if kind == "align":
        conversations = [[(CAPTION_QUESTION, scene_caption(s))] for s in scenes]
    else:
        conversations = [conversation(s, rng, turns=turns) for s in scenes]
    return chat_batch(model, scenes, conversations)


def pretrain_llava(clip_path: str | None, settings: LLaVAPretrainConfig = LLaVAPretrainConfig(), *,
                   vision: VisionConfig | None = None, llm: LLMConfig | None = None,
                   stages: tuple[str, ...] = RECIPE_STAGES, progress: bool = True, callback=None, run_dir=None,
                   resume: bool = False) -> tuple[AnyRefModel, dict]:
    """Run `stages` of ("lm", "align", "instruct") on top of the CLIP-mini folder `clip_path`.

    Skipping "lm" starts from the language model in `llm.pretrained_path` (as LLaVA starts from Vicuna); the "lm"
    stage alone needs no CLIP. Returns the model and each stage's losses, plus under "image_token_similarity" the
    mean cosine between image tokens before and after each image stage (alignment must not collapse them). With
    `run_dir`, each stage checkpoints to run_dir/<stage> (see `run_loop`); `resume` continues there, finished stages
    included.
    """
    stage_dirs = {stage: Path(run_dir) / stage if run_dir else None for stage in STAGES}
    torch.manual_seed(settings.seed)
    model = AnyRefModel(llava_config(clip_path=clip_path, vision=vision, llm=llm, stage="lm"))
    llama, tokenizer, histories, similarity = model.llama, model.tokenizer, {}, {}

    def lm_loss(step: int) -> torch.Tensor:
        rng = scene_rng(TRAIN_STREAM, settings.seed, 0, step)
        texts = [lm_sentence(rng, SCENE_SIZE) for _ in range(settings.lm_batch)]
        ids = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
               for t in texts]
        input_ids = pad_batch(ids, value=model.ids.pad)  # (B, T)
        labels = input_ids.masked_fill(input_ids == model.ids.pad, IGNORE_INDEX)
        logits = llama(input_ids=input_ids, attention_mask=(labels != IGNORE_INDEX).long()).logits  # (B, T, V)
        return text_loss(logits, labels)

    if "lm" in stages:
        llama.train()
        histories["lm"] = run_loop(lm_loss, llama, steps=settings.lm_steps, lr=settings.lm_lr, seed=settings.seed,
                                   progress=progress, desc="LLaVA-mini LM", callback=callback,
                                   run_dir=stage_dirs["lm"], resume=resume).losses
    for stage, steps, batch, lr, turns in (
            ("align", settings.align_steps, settings.align_batch, settings.align_lr, 1),
            ("instruct", settings.instruct_steps, settings.instruct_batch, settings.instruct_lr, settings.instruct_turns)):
        if stage not in stages:
            continue
        model.config.trainable = llava_config(clip_path=clip_path, vision=vision, llm=llm, stage=stage).trainable
        model.apply_trainable()
        similarity[f"before_{stage}"] = image_token_similarity(model)
        model.train()
        histories[stage] = run_loop(
            lambda step, stage=stage, batch=batch, turns=turns: model(_stage_batch(
                model, (settings.seed, 1 + (stage == "instruct"), step), batch, kind=stage, turns=turns,
                objects=curriculum_objects(step, settings.curriculum_steps) if stage == "instruct" else None))["ce"],
            model, steps=steps, lr=lr, seed=settings.seed, progress=progress, desc=f"LLaVA-mini {stage}",
            callback=callback, run_dir=stage_dirs[stage], resume=resume).losses
        similarity[f"after_{stage}"] = image_token_similarity(model)
    histories["image_token_similarity"] = similarity
    return model.eval(), histories


def heldout_questions(kind: str, *, num: int):
    """The `num` held-out (scene, question, answer) triples of one kind that `answer_accuracy` scores."""
    for i in range(num):
        rng = scene_rng(HELDOUT_STREAM, QUESTION_KINDS.index(kind), i)
        scene = make_scene(rng, image_size=SCENE_SIZE)
        yield (scene, *question(scene, rng, kind=kind))


@torch.no_grad()
def answer_accuracy(model: AnyRefModel, *, num: int = 100) -> dict[str, float]:
    """Exact-match accuracy of greedy answers to held-out questions, per kind and overall (num per kind)."""
    model.eval()
    scores = {}
    for kind in QUESTION_KINDS:
        right = sum(model.generate(torch.from_numpy(scene.image), q, max_new_tokens=4).text.strip() == a
                    for scene, q, a in heldout_questions(kind, num=num))
        scores[kind] = right / num
    scores["overall"] = float(np.mean([scores[k] for k in QUESTION_KINDS]))
    return scores


def pretraining_metrics(model: AnyRefModel, settings: LLaVAPretrainConfig, histories: dict) -> dict:
    """What a LLaVA-mini folder records of its training: held-out answers, settings, token diversity, losses."""
    losses = {stage: values for stage, values in histories.items() if stage in STAGES}
    return {"answer_accuracy": answer_accuracy(model), "settings": asdict(settings),
            "image_token_similarity": histories["image_token_similarity"],
            "steps": {stage: len(values) for stage, values in losses.items()},
            "final_loss_mean_last50": {stage: float(np.mean(values[-50:])) for stage, values in losses.items()}}


def save_llava_mini(model: AnyRefModel, folder=None, *, metrics: dict | None = None, overwrite: bool = False) -> Path:
    """Write llm/ (a LlamaForCausalLM folder), projector.safetensors, tokenizer/ and metrics.json."""
    folder = fresh_folder(folder or ingredient_dir("llava-mini"), overwrite=overwrite)
    model.llama.save_pretrained(str(folder / LLM_DIR))
    save_file({k: v.contiguous() for k, v in model.vision.projector.state_dict().items()}, str(folder / PROJECTOR_FILE))
    model.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
    (folder / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2) + "\n")
    return folder


def load_llava_mini(folder=None, *, clip_folder=None) -> AnyRefModel:
    """LLaVA-mini (CLIP-mini tower + projector + LLM, no SAM use) from a folder written by `save_llava_mini`."""
    folder = Path(folder or ingredient_dir("llava-mini"))
    if not (folder / LLM_DIR).is_dir():
        raise AnyRefCheckpointError(f"{str(folder)!r} holds no LLaVA-mini; train it with `anyref pretrain llava`")
    config = llava_config(clip_path=str(clip_folder or ingredient_dir("clip-mini")), stage="instruct")
    config.vision.projector_path = str(folder / PROJECTOR_FILE)
    config.llm.pretrained_path = str(folder / LLM_DIR)
    config.tokenizer_path = str(folder / TOKENIZER_DIR)
    return AnyRefModel(config).eval()
