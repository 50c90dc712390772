"""The `paper` preset at full size on the meta device: parameters per part and memory per GPU for the Sec. 4 recipe.

`python -m anyref.paper_scale` builds AnyRef with CLIP ViT-L/14, LLaMA-7B (LoRA r8 a16 on q, v), SAM-H and the
ImageBind-H audio branch without allocating a weight, counts total and trainable parameters per part, and estimates
the memory per GPU of ZeRO-2 training (DeepSpeed's own estimators for the model states, published activation counts
for the rest). Nothing is downloaded; the figures go to data/results/paper_scale.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import AnyRefConfig, preset
from .paths import RESULTS_DIR

GIB = 2 ** 30
PAPER_TRAINABLE = 565e6  # Sec. 1: "only contains 565M learnable parameters"
PAPER_SHARE = 0.07  # Sec. 3.2.1: "approximately 7% of the total parameters"
LLAMA_VOCAB = 32000  # LLaMA's sentencepiece vocabulary (the project's special tokens are added on top)
HALF = 2  # bytes of an fp16 value: the recipe keeps frozen weights and activations in fp16
FP32 = 4
CUDA_CONTEXT_BYTES = 1 * GIB  # CUDA context, cuBLAS workspaces and allocator slack (a rule of thumb)
V100_BYTES, CONSUMER_BYTES = 32 * GIB, 24 * GIB
TYPICAL_TEXT_TOKENS = 80  # llava_v1 system prompt + referring question + answer, in LLaMA tokens (an estimate)
MAX_TEXT_TOKENS = 512  # the official tokenizer's model_max_length


@dataclass
class Part:
    """One row of the parameter table."""

    name: str
    total: int
    trainable: int


@dataclass
class Setup:
    """How one training run is laid out on GPUs (the paper: 8 x V100, micro-batch 6, ZeRO-2, fp16)."""

    name: str
    gpus: int = 8
    micro_batch: int = 6
    accumulation: int = 8
    seq_len: int = 256 + TYPICAL_TEXT_TOKENS - 1  # the <image> id becomes 256 CLIP tokens
    stage: int = 2
    offload_optimizer: bool = False
    checkpointing: bool = True
    reduce_bucket_size: float = 5e8  # elements, as in the DeepSpeed config
    overlap_comm: bool = True
    gpu_bytes: int = V100_BYTES

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step."""
        return self.gpus * self.micro_batch * self.accumulation


def llama_sized_tokenizer(vocab_size: int = LLAMA_VOCAB):
    """A stand-in tokenizer with LLaMA's vocabulary size plus the paper's special tokens (only its size matters)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .tokens import add_special_tokens

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"piece{i}": i for i in range(3, vocab_size)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return add_special_tokens(PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                                      eos_token="</s>"))


def build_paper_model(config: AnyRefConfig | None = None):
    """AnyRef at the paper's size on the meta device: shapes and requires_grad, no memory."""
    from .model import AnyRefModel

    config = config or preset("paper")
    with torch.device("meta"):
        return AnyRefModel(config, tokenizer=llama_sized_tokenizer())


def _count(parameters) -> tuple[int, int]:
    params = list(parameters)
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def parameter_table(model) -> list[Part]:
    """Total and trainable parameters per part; the rows add up to the whole model (checked)."""
    llama = model.llama
    embeddings = [llama.get_input_embeddings().weight, llama.get_output_embeddings().weight]
    taken = {id(p) for p in embeddings}
    lora = [p for n, p in model.llm.named_parameters() if "lora_" in n]
    taken |= {id(p) for p in lora}
    decoder = [p for p in model.llm.parameters() if id(p) not in taken]
    groups = [
        ("CLIP ViT-L/14 (vision encoder)", model.vision.clip.parameters()),
        ("vision projection (LLaVA mm_projector)", model.vision.projector.parameters()),
        ("LLaMA-7B decoder (LLaVA)", decoder),
        ("LLaMA token embeddings + LM head", embeddings),
        ("LoRA r8 a16 on q_proj, v_proj", lora),
        ("SAM-H image encoder", model.sam.image_encoder.parameters()),
        ("SAM prompt encoder + mask decoder", [*model.sam.prompt_encoder.parameters(),
                                               *model.sam.mask_decoder.parameters()]),
        ("ImageBind-H audio branch", model.audio.parameters()),
        ("audio projection", model.audio_projection.parameters()),
        ("gamma (<obj> MLP)", model.obj_mlp.parameters()),
    ]
    rows = [Part(name, *_count(params)) for name, params in groups]
    whole = _count(model.parameters())
    if (sum(r.total for r in rows), sum(r.trainable for r in rows)) != whole:
        raise AssertionError(f"parameter table rows do not add up to the model's {whole}; a part is missing")
    return rows


def model_state_bytes(*, stage: int, trainable: int, frozen: int, gpus: int, largest_layer: int = 0,
                      offload_optimizer: bool = False) -> int:
    """Weights, gradients and optimizer states per GPU for ZeRO `stage` with fp16 mixed precision and Adam.

    Stages 2 and 3 use DeepSpeed's estimators on the trainable parameters; stages 0 and 1 (no estimator in
    DeepSpeed) use the same accounting: 2 bytes fp16 weights + 2 fp16 gradients + 16 of fp32 gradients, master
    weights and Adam moments. Frozen weights cost 2 bytes each (fp16), partitioned only by stage 3.
    """
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    if stage == 0:
        return HALF * frozen + (2 * HALF + 16) * trainable
    if stage == 1:
        return HALF * frozen + 2 * HALF * trainable + 16 * trainable // gpus
    if stage == 2:
        _, gpu = estimate_zero2_model_states_mem_needs(trainable, num_gpus_per_node=gpus,
                                                       cpu_offload=offload_optimizer)
        return HALF * frozen + gpu
    if stage == 3:
        _, gpu, _ = estimate_zero3_model_states_mem_needs(trainable, largest_layer, num_gpus_per_node=gpus,
                                                          cpu_offload=offload_optimizer, cpu_offload_params=False)
        return HALF * frozen // gpus + gpu
    raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")


def llm_activation_bytes(*, batch: int, seq_len: int, hidden: int, intermediate: int, layers: int, heads: int,
                         vocab: int, checkpointing: bool) -> dict[str, int]:
    """fp16 activations the LLM keeps for backward, by the count of Korthikanti et al. (2022, eq. 1) with LLaMA's
    SwiGLU MLP: per layer s*b*(17h + 8i) + 5*a*s^2*b bytes (standard attention). With gradient checkpointing only
    each layer's input (2*s*b*h) stays, plus one layer recomputed at a time. The logits cost s*b*V*(2 + 4 + 4):
    fp16 logits, the fp32 copy the loss takes and its gradient."""
    s, b = seq_len, batch
    layer = s * b * (17 * hidden + 8 * intermediate) + 5 * heads * s * s * b
    kept = layers * HALF * s * b * hidden + layer if checkpointing else layers * layer
    official_attentions = layers * b * heads * s * s * HALF  # output_attentions=True returns every layer's probs
    return {"layers": kept, "logits": s * b * vocab * (HALF + 2 * FP32), "official_output_attentions": official_attentions}


def sam_encoder_peak_bytes(*, batch: int, image_size: int, patch_size: int, heads: int) -> int:
    """Transient peak of SAM's frozen encoder in a global-attention block (no grad): two fp16 (B, heads, T, T)
    attention maps live at once (scores and their relative-position sum, then that sum and its softmax)."""
    tokens = (image_size // patch_size) ** 2
    return 2 * batch * heads * tokens * tokens * HALF


def memory_per_gpu(model, setup: Setup, *, table: list[Part] | None = None) -> dict:
    """Estimated peak bytes per GPU for `setup`, by component, and whether it fits `setup.gpu_bytes`."""
    table = table or parameter_table(model)
    trainable = sum(r.trainable for r in table)
    frozen = sum(r.total - r.trainable for r in table)
    largest = max(p.numel() for p in model.parameters())
    states = model_state_bytes(stage=setup.stage, trainable=trainable, frozen=frozen, gpus=setup.gpus,
                               largest_layer=largest, offload_optimizer=setup.offload_optimizer)
    cfg = model.llama.config
    llm = llm_activation_bytes(batch=setup.micro_batch, seq_len=setup.seq_len, hidden=cfg.hidden_size,
                               intermediate=cfg.intermediate_size, layers=cfg.num_hidden_layers,
                               heads=cfg.num_attention_heads, vocab=cfg.vocab_size, checkpointing=setup.checkpointing)
    sam = model.config.sam
    sam_peak = sam_encoder_peak_bytes(batch=setup.micro_batch, image_size=sam.image_size, patch_size=sam.patch_size,
                                      heads=sam.num_heads)
    buckets = int(setup.reduce_bucket_size) * HALF * (2 if setup.overlap_comm else 1) if setup.stage >= 2 else 0
    activations = llm["layers"] + llm["logits"]
    # SAM's frozen encoder runs before the LLM and frees its maps: the peak is the larger of the two phases.
    peak = states + buckets + CUDA_CONTEXT_BYTES + max(sam_peak, activations)
    official_peak = peak - max(sam_peak, activations) + max(sam_peak, activations + llm["official_output_attentions"])
    return {**asdict(setup), "global_batch": setup.global_batch, "model_states": states,
            "communication_buckets": buckets, "cuda_context": CUDA_CONTEXT_BYTES, "llm_activations": llm["layers"],
            "logits": llm["logits"], "sam_encoder_transient": sam_peak, "peak": peak,
            "peak_phase": "SAM encoder" if sam_peak >= activations else "LLM backward",
            "fits": peak <= setup.gpu_bytes, "official_code_peak": official_peak,
            "official_code_fits": official_peak <= setup.gpu_bytes}


def default_setups() -> list[Setup]:
    """The paper's recipe at a typical and the longest sequence, and what one 24 GB GPU needs instead."""
    return [
        Setup("paper: 8 x V100 32 GB, micro-batch 6, typical sequence"),
        Setup("paper: 8 x V100 32 GB, micro-batch 6, longest sequence", seq_len=MAX_TEXT_TOKENS),
        Setup("paper recipe without gradient checkpointing", checkpointing=False),
        Setup("one 24 GB GPU, the recipe unchanged", gpus=1, gpu_bytes=CONSUMER_BYTES),
        Setup("one 24 GB GPU: micro-batch 1, accumulation 384, optimizer on the CPU", gpus=1, micro_batch=1,
              accumulation=384, offload_optimizer=True, reduce_bucket_size=5e7, gpu_bytes=CONSUMER_BYTES),
    ]


def stage_table(model, *, table: list[Part], gpus: int = 8) -> list[dict]:
    """Model-state bytes per GPU for ZeRO stages 0-3 on `gpus` GPUs: what each stage partitions."""
    trainable = sum(r.trainable for r in table)
    frozen = sum(r.total - r.trainable for r in table)
    largest = max(p.numel() for p in model.parameters())
    what = {0: "nothing (data parallel)", 1: "optimizer states", 2: "optimizer states + gradients",
            3: "optimizer states + gradients + weights"}
    return [{"stage": s, "partitions": what[s], "bytes": model_state_bytes(stage=s, trainable=trainable, frozen=frozen,
                                                                             gpus=gpus, largest_layer=largest)}
            for s in range(4)]


def double_counted_embeddings(table: list[Part]) -> dict:
    """One reading of the paper's 565M / 7 %: peft's modules_to_save keeps a frozen original beside a trainable copy
    of embed_tokens and lm_head; a count that takes both as trainable adds them twice (an inference, not verified)."""
    embeddings = next(r.total for r in table if r.name.startswith("LLaMA token embeddings"))
    trainable = sum(r.trainable for r in table) + embeddings
    total = sum(r.total for r in table) + embeddings
    return {"trainable": trainable, "total": total, "share": trainable / total}


def paper_scale_report(config: AnyRefConfig | None = None, setups: list[Setup] | None = None) -> dict:
    """Everything `python -m anyref.paper_scale` prints and saves."""
    model = build_paper_model(config)
    table = parameter_table(model)
    trainable, total = sum(r.trainable for r in table), sum(r.total for r in table)
    return {
        "parts": [asdict(r) for r in table],
        "trainable": trainable, "total": total, "share": trainable / total,
        "paper": {"trainable": PAPER_TRAINABLE, "share": PAPER_SHARE},
        "embeddings_counted_twice": double_counted_embeddings(table),
        "vocab_size": model.llama.config.vocab_size,
        "zero_stages_8_gpus": stage_table(model, table=table),
        "memory": [memory_per_gpu(model, s, table=table) for s in (setups or default_setups())],
    }


def format_report(report: dict) -> str:
    """The report as plain-text tables."""
    lines = [f"{'part':42s} {'total':>14s} {'trainable':>14s}"]
    lines += [f"{r['name']:42s} {r['total']:>14,d} {r['trainable']:>14,d}" for r in report["parts"]]
    lines.append(f"{'all':42s} {report['total']:>14,d} {report['trainable']:>14,d}  "
                 f"({100 * report['share']:.2f} % trainable)")
    twice = report["embeddings_counted_twice"]
    lines.append(f"paper: {report['paper']['trainable'] / 1e6:.0f}M trainable, about "
                 f"{100 * report['paper']['share']:.0f} %; with embed_tokens and lm_head counted twice: "
                 f"{twice['trainable'] / 1e6:.0f}M of {twice['total'] / 1e9:.2f}B ({100 * twice['share']:.2f} %)")
    lines.append("")
    lines.append("ZeRO model states per GPU on 8 GPUs (fp16 + Adam):")
    lines += [f"  stage {z['stage']}: {z['bytes'] / GIB:6.1f} GiB  partitions {z['partitions']}"
              for z in report["zero_stages_8_gpus"]]
    lines.append("")
    for m in report["memory"]:
        verdict = "fits" if m["fits"] else "does NOT fit"
        lines.append(f"{m['name']}: peak {m['peak'] / GIB:.1f} GiB of {m['gpu_bytes'] / GIB:.0f} GiB -> {verdict} "
                     f"(states {m['model_states'] / GIB:.1f}, LLM activations {m['llm_activations'] / GIB:.1f}, "
                     f"logits {m['logits'] / GIB:.1f}, SAM encoder {m['sam_encoder_transient'] / GIB:.1f}, "
                     f"buckets {m['communication_buckets'] / GIB:.1f}; peak in the {m['peak_phase']}; official code "
                     f"{m['official_code_peak'] / GIB:.1f} GiB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the parameter and memory tables and write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS_DIR / "paper_scale.json"), help="where to write the JSON")
    args = parser.parse_args(argv)
    report = paper_scale_report()
    print(format_report(report))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
