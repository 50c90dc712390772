"""AnyRef: CLIP tokens + text -> Llama -> `<obj>` hidden state -> refocusing (Eq. 2) -> MLP gamma -> SAM mask (Eq. 1)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .audio import AudioEncoder, waveform_to_clips
from .config import AnyRefConfig, AudioConfig
from .data.words import build_word_tokenizer
from .errors import AnyRefCheckpointError, AnyRefConfigError, AnyRefError, AnyRefInputError
from .paths import resolve
from .llm import add_lora, build_llama
from .locator import LOCATOR_LOSSES, Locator, dense_prompt, locator_loss, pooled_by_map, zero_linear
from .losses import anyref_loss
from .prompt_distill import distill_loss
from .referring import (AUD_REF_FEATURE, IMG_REF_FEATURE, Audio, Example, Region, check_box, check_example,
                        check_references, example_features, region_features)
from .refocus import LastLayerQK, ObjQuery, attention_rows, capture_last_layer, refocus, refocus_weights
from .sam import build_sam, decode_masks, sam_inputs
from .tokens import IGNORE_INDEX, SPECIAL_TOKENS, TokenIds, encode, load_tokenizer
from .vision import VisionTower

WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_DIR = "model.safetensors", "config.json", "tokenizer"


def build_audio(config: AudioConfig) -> AudioEncoder:
    """The audio encoder: fresh, from an audio-mini folder, or with an ImageBind .pth's audio weights."""
    from dataclasses import replace

    from .weights import load_weights

    if not config.checkpoint:
        return AudioEncoder(config)
    path = resolve(config.checkpoint)
    if path.is_dir():
        encoder = AudioEncoder(replace(config, checkpoint=None))
        load_weights(encoder, path)
        return encoder
    return AudioEncoder(replace(config, checkpoint=str(path)))


@dataclass
class EncodedImage:
    """One image through the frozen encoders, reused by several prompts about it (few-shot passes)."""

    images: torch.Tensor  # (1, H, W, 3) uint8 on the model's device
    features: torch.Tensor  # (1, P, C) CLIP patch features
    tokens: torch.Tensor  # (1, P, D) projected image tokens
    sam: tuple[torch.Tensor, tuple[int, int]] | None = None  # SAM image embeddings (1, C', h, w), resized size


@dataclass
class Batch:
    """Teacher-forced inputs: ids/labels (B, T), uint8 images (B, H, W, 3), target masks per sample or None."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor
    masks: list[torch.Tensor | None]
    references: list[tuple] | None = None  # per sample: Region / Example / Audio, in the order of its placeholders

    def to(self, device) -> "Batch":
        """The same batch on another device."""
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device),
                     self.images.to(device), [m if m is None else m.to(device) for m in self.masks], self.references)


@dataclass
class Generation:
    """What `generate` returns for one image: the answer, its ids, one mask (logits) and embedding per `<obj>`."""

    text: str
    token_ids: list[int]
    mask_logits: torch.Tensor  # (N, H, W)
    obj_embeddings: torch.Tensor  # (N, D) after refocusing, before gamma
    refocus_weights: torch.Tensor  # (N, A): a-bar over the positions that predicted answer tokens 0..A-1
    prompt_length: int


class AnyRefModel(nn.Module):
    """The whole model; one code path for the micro, mini and paper presets."""

    def __init__(self, config: AnyRefConfig, *, tokenizer=None):
        super().__init__()
        self.config = config
        if tokenizer is None:
            path = config.tokenizer_path
            tokenizer = build_word_tokenizer() if path is None else load_tokenizer(path)
        self.tokenizer = tokenizer
        self.ids = TokenIds.of(self.tokenizer)
        llm = build_llama(config.llm, vocab_size=len(self.tokenizer), pad_token_id=self.ids.pad,
                          eos_token_id=self.ids.eos, bos_token_id=self.tokenizer.bos_token_id)
        hidden = llm.config.hidden_size
        self.vision = VisionTower(config.vision, llm_hidden_size=hidden)
        self.sam = build_sam(config.sam)
        self.audio = build_audio(config.audio)  # ImageBind's audio branch (frozen in the paper)
        self.audio_projection = nn.Linear(config.audio.out_dim, hidden)  # audio clip embedding -> one LLM token
        self.obj_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, config.sam.prompt_dim))
        if config.locator_loss not in LOCATOR_LOSSES:
            raise AnyRefConfigError(f"unknown locator_loss {config.locator_loss!r}; choose one of {LOCATOR_LOSSES}")
        self.locator = Locator(hidden, ranking=config.locator_loss == "softmax") if config.locator else None
        if config.locator_feedback and not config.locator:
            raise AnyRefConfigError("locator_feedback adds what the locator found to `<obj>`; turn locator on too")
        self.found_value = zero_linear(hidden) if config.locator_feedback else None  # what the map found -> `<obj>`
        self.refocus_lambda = nn.Parameter(torch.full((1,), float(config.refocus_weight))) if config.refocus_learnable \
            else None  # lambda_f trained with the model (Table 7's dagger rows); else config.refocus_weight
        self.llm = add_lora(llm, config.llm) if config.llm.use_lora else llm
        self.apply_trainable()

    # ---- structure -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    @property
    def llama(self):
        """The underlying LlamaForCausalLM (inside the peft wrapper when LoRA is on)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def apply_trainable(self) -> None:
        """Set requires_grad following config.trainable (the paper: LoRA, new tokens, mask decoder, gamma)."""
        switch = self.config.trainable
        for name, param in self.llama.named_parameters():
            param.requires_grad = switch.llm_full or "lora_" in name
        for embedding in (self.llama.get_input_embeddings(), self.llama.get_output_embeddings()):
            embedding.weight.requires_grad = switch.token_embeddings or switch.llm_full
        parts = [(self.vision.clip, switch.vision), (self.vision.projector, switch.projector),
                 (self.sam.image_encoder, switch.sam_encoder), (self.sam.prompt_encoder, switch.mask_decoder),
                 (self.sam.mask_decoder, switch.mask_decoder), (self.obj_mlp, switch.obj_mlp),
                 (self.audio, switch.audio_encoder), (self.audio_projection, switch.audio_projection)]
        if self.locator is not None:
            parts.append((self.locator, switch.obj_mlp))  # trains with gamma
        if self.found_value is not None:
            parts.append((self.found_value, switch.obj_mlp))
        for module, on in parts:
            for param in module.parameters():
                param.requires_grad = on

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "total": total}

    # ---- inputs ------------------------------------------------------------------------------------------------
    def _frozen_vision(self):
        """No gradients through CLIP and the projector when both are frozen (the paper)."""
        frozen = not (self.config.trainable.vision or self.config.trainable.projector)
        return torch.set_grad_enabled(torch.is_grad_enabled() and not frozen)

    def image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, H, W, 3) -> CLIP patch features (B, P, C) and projected image tokens (B, P, D)."""
        with self._frozen_vision():
            features = self.vision.scene_features(self.vision.preprocess(images))  # (B, P, C)
            return features, self.vision.projector(features)

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> projected CLIP patch tokens (B, P, D)."""
        return self.image_features(images)[1]

    def reference_tokens(self, images: torch.Tensor, features: torch.Tensor, references: list[tuple]) -> list:
        """Each sample's references -> its placeholder features in order: a list of (n_b, D), n_b = 16 per box or
        example and 3 per audio (Sec. 3.1.1)."""
        size = self.vision.clip.config.image_size
        height, width = images.shape[1:3]
        pieces: dict[tuple[int, int], torch.Tensor] = {}
        regions = [(b, k, r) for b, refs in enumerate(references) for k, r in enumerate(refs) if isinstance(r, Region)]
        examples = [(b, k, r) for b, refs in enumerate(references) for k, r in enumerate(refs) if isinstance(r, Example)]
        sounds = [(b, k, r) for b, refs in enumerate(references) for k, r in enumerate(refs) if isinstance(r, Audio)]
        with self._frozen_vision():
            if regions:
                boxes = torch.tensor([check_box(r.box, height=height, width=width) for _, _, r in regions],
                                     device=features.device)  # (N, 4) in image pixels
                boxes = boxes * boxes.new_tensor([size / width, size / height] * 2)  # (N, 4) in CLIP input pixels
                index = torch.tensor([b for b, _, _ in regions], device=features.device)
                tokens = self.vision.projector(region_features(features, boxes, index, image_size=size))  # (N, 16, D)
                pieces.update({(b, k): t for (b, k, _), t in zip(regions, tokens)})
            if examples:
                pixels = torch.cat([self.vision.preprocess(torch.from_numpy(check_example(r.image))[None].to(images.device))
                                    for _, _, r in examples])  # (N, 3, S, S)
                pooled = example_features(self.vision.patch_features(pixels))  # (N, 16, C)
                pieces.update({(b, k): t for (b, k, _), t in zip(examples, self.vision.projector(pooled))})
        if sounds:
            clips = torch.stack([waveform_to_clips(r.waveform, config=self.config.audio) for _, _, r in sounds])
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.trainable.audio_encoder):
                embedded = self.audio(clips.to(features.device))  # (N, 3, E)
            pieces.update({(b, k): t for (b, k, _), t in zip(sounds, self.audio_projection(embedded))})  # (3, D) each
        dim = self.llama.config.hidden_size
        return [torch.cat([pieces[(b, k)] for k in range(len(refs))]) if refs else features.new_zeros((0, dim))
                for b, refs in enumerate(references)]

    def splice(self, input_ids: torch.Tensor, image_tokens: torch.Tensor, reference_tokens: list | None = None):
        """Fill reference placeholders one-for-one, then replace each sample's single `<image>` id by its P image
        tokens: (B, T) -> embeds (B, T+P-1, D).

        Also returns the token id at every new position (-1 where an image token sits) and the `<image>` index.
        """
        is_image = input_ids == self.ids.image  # (B, T)
        if not bool((is_image.sum(1) == 1).all()):
            raise AnyRefInputError(f"every sample needs exactly one {self.tokenizer.convert_ids_to_tokens(self.ids.image)}"
                                   " token; found counts " + str(is_image.sum(1).tolist()))
        is_ref = (input_ids == IMG_REF_FEATURE) | (input_ids == AUD_REF_FEATURE)  # (B, T)
        where = is_image.float().argmax(1).tolist()
        embeds = self.llama.get_input_embeddings()(input_ids.masked_fill(is_image | is_ref, self.ids.pad))  # (B, T, D)
        num = image_tokens.shape[1]
        rows, ids = [], []
        for b, p in enumerate(where):
            row = embeds[b]
            slots = is_ref[b].nonzero()[:, 0]
            given = 0 if reference_tokens is None else len(reference_tokens[b])
            if len(slots) != given:
                raise AnyRefInputError(f"sample {b} has {len(slots)} reference placeholders but {given} reference "
                                       "features; pass one reference per <img.ref></img.ref> / <aud.ref></aud.ref>")
            if given:
                row = row.index_put((slots,), reference_tokens[b].to(row.dtype))  # (T, D)
            rows.append(torch.cat([row[:p], image_tokens[b].to(embeds.dtype), row[p + 1:]]))
            ids.append(torch.cat([input_ids[b, :p], input_ids.new_full((num,), -1), input_ids[b, p + 1:]]))
        return torch.stack(rows), torch.stack(ids), where

    def _expand(self, values: torch.Tensor, where: list[int], num: int, fill: int) -> torch.Tensor:
        """Apply the splice to a (B, T) per-token tensor (labels, attention mask)."""
        return torch.stack([torch.cat([v[:p], v.new_full((num,), fill), v[p + 1:]]) for v, p in zip(values, where)])

    # ---- the `<obj>` path --------------------------------------------------------------------------------------
    def obj_queries(self, token_ids: torch.Tensor, answer_start: list[int]) -> list[ObjQuery]:
        """Every `<obj>` in (B, L) spliced ids: query = the position predicting it; keys start at the last prompt."""
        found = (token_ids == self.ids.obj).nonzero().tolist()
        return [ObjQuery(batch=b, query=p - 1, start=answer_start[b] - 1) for b, p in found]

    def obj_embeddings(self, hidden: torch.Tensor, qk: LastLayerQK, queries: list[ObjQuery],
                       key_padding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Refocused `<obj>` embeddings (N, D) (Eq. 2) and their weights a-bar (N, L), from hidden (B, L, D)."""
        cfg = self.llama.config
        rows = attention_rows(qk, queries, num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads,
                              key_padding=key_padding)
        weights = refocus_weights(rows, queries)
        weight = self.config.refocus_weight if self.refocus_lambda is None else self.refocus_lambda
        return refocus(hidden, weights, queries, weight=weight), weights

    def sam_embeddings(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """uint8 (B, H, W, 3) -> SAM image embeddings (B, C, h, w) and the size the images were resized to."""
        pixels, resized = sam_inputs(self.sam, images)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.trainable.sam_encoder):
            return self.sam.image_encoder(pixels), resized

    def locate(self, embeddings: torch.Tensor, tokens: torch.Tensor, queries: list[ObjQuery]) -> torch.Tensor:
        """The locator's map of each `<obj>` (N, side, side) over its image's tokens, `tokens` (B, P, D)."""
        return self.locator(embeddings, tokens[[q.batch for q in queries]])

    def ground(self, embeddings: torch.Tensor, tokens: torch.Tensor,
               queries: list[ObjQuery]) -> tuple[torch.Tensor, torch.Tensor]:
        """The locator's map (N, side, side) of each `<obj>` embedding (N, D) over its image's tokens (B, P, D), and
        the embeddings gamma reads: with `locator_feedback`, plus a linear map of the tokens the map's softmax pools."""
        located = self.locate(embeddings, tokens, queries)
        if self.found_value is None:
            return embeddings, located
        found = pooled_by_map(located, tokens[[q.batch for q in queries]])  # (N, D)
        return embeddings + self.found_value(found), located

    def masks_for(self, images: torch.Tensor, embeddings: torch.Tensor, queries: list[ObjQuery], *,
                  encoded: tuple[torch.Tensor, tuple[int, int]] | None = None, tokens: torch.Tensor | None = None,
                  located: torch.Tensor | None = None) -> torch.Tensor:
        """gamma(embedding) as SAM's sparse prompt on each query's image (Eq. 1): mask logits (N, H, W).

        `encoded` is `sam_embeddings` of the queried images, when the caller has it already. With the locator on,
        its map is SAM's dense prompt: `located`, with the embeddings `ground` returned, else `ground` runs here on
        the image tokens `tokens` or those of `images`.
        """
        if self.locator is not None and located is None:
            tokens = self.image_tokens(images) if tokens is None else tokens
            embeddings, located = self.ground(embeddings, tokens, queries)
        prompts = self.obj_mlp(embeddings)  # (N, C)
        needed = sorted({q.batch for q in queries})
        image_embeddings, resized = encoded or self.sam_embeddings(images[needed])  # (B', C, h, w)
        slot = {b: i for i, b in enumerate(needed)}
        image_index = torch.tensor([slot[q.batch] for q in queries], device=image_embeddings.device)
        dense = None if located is None else dense_prompt(self.sam, located)  # (N, C, h, w)
        low_res = decode_masks(self.sam, image_embeddings, image_index, prompts, dense=dense)  # (N, 1, h', w')
        return self.sam.postprocess_masks(low_res, resized, tuple(images.shape[1:3]))[:, 0]  # (N, H, W)

    # ---- training forward ----------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> dict:
        """Teacher-forced pass: Eq. 3 loss parts, mask logits and refocused embeddings of every `<obj>`."""
        features, image_tokens = self.image_features(batch.images)
        references = None
        if batch.references is not None and any(batch.references):
            references = self.reference_tokens(batch.images, features, batch.references)
        embeds, token_ids, where = self.splice(batch.input_ids, image_tokens, references)
        num = image_tokens.shape[1]
        attention = self._expand(batch.attention_mask, where, num, 1)  # (B, L)
        labels = self._expand(batch.labels, where, num, IGNORE_INDEX)  # (B, L)
        llama = self.llama
        with capture_last_layer(llama.model) as record:
            hidden = llama.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state  # (B, L, D)
        logits = llama.lm_head(hidden)  # (B, L, V)
        answer_start = [int((row != IGNORE_INDEX).nonzero()[0]) if (row != IGNORE_INDEX).any() else row.numel()
                        for row in labels]
        queries = self.obj_queries(token_ids, answer_start)
        self._check_mask_counts(queries, batch.masks)
        supervised = [i for i, q in enumerate(queries) if batch.masks[q.batch] is not None]
        mask_logits = targets = located = None
        embeddings = hidden.new_zeros((0, hidden.shape[-1]))
        if queries:
            embeddings, _ = self.obj_embeddings(hidden, record[0], queries, key_padding=attention)
        if supervised:
            chosen, prompting = [queries[i] for i in supervised], embeddings[supervised]  # (N, D)
            if self.locator is not None:
                prompting, located = self.ground(prompting, image_tokens, chosen)  # (N, D), (N, side, side)
            mask_logits = self.masks_for(batch.images, prompting, chosen, located=located)
            targets = self._targets(batch.masks, chosen)
        losses = anyref_loss(logits, labels, mask_logits, targets, ce_weight=self.config.ce_weight,
                             bce_weight=self.config.bce_weight, dice_weight=self.config.dice_weight)
        if self.locator is not None:
            losses["locate"] = (losses["ce"].new_zeros(()) if located is None
                                else locator_loss(located, targets, kind=self.config.locator_loss))
            losses["loss"] = losses["loss"] + self.config.locator_weight * losses["locate"]
        if self.config.prompt_distill_weight and supervised:
            losses["distill"] = distill_loss(self.sam, self.obj_mlp(prompting), targets)
            losses["loss"] = losses["loss"] + self.config.prompt_distill_weight * losses["distill"]
        return {**losses, "logits": logits, "mask_logits": mask_logits, "obj_embeddings": embeddings,
                "queries": queries}

    @staticmethod
    def _check_mask_counts(queries: list[ObjQuery], masks: list[torch.Tensor | None]) -> None:
        counts = [0] * len(masks)
        for q in queries:
            counts[q.batch] += 1
        for b, (n, m) in enumerate(zip(counts, masks)):
            if m is not None and m.shape[0] != n:
                raise AnyRefInputError(f"sample {b} has {n} <obj> tokens but {m.shape[0]} target masks; "
                                       "give one mask per <obj> (or None for no mask supervision)")

    @staticmethod
    def _targets(masks: list[torch.Tensor | None], queries: list[ObjQuery]) -> torch.Tensor:
        """Target mask of each query, in query order: (N, H, W)."""
        seen: dict[int, int] = {}
        out = []
        for q in queries:
            k = seen.get(q.batch, 0)
            out.append(masks[q.batch][k])
            seen[q.batch] = k + 1
        return torch.stack(out).float()

    # ---- inference -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> EncodedImage:
        """One uint8 image (H, W, 3) through CLIP and the projector; SAM's encoder runs when a mask is first needed."""
        images = image[None].to(self.device)
        return EncodedImage(images, *self.image_features(images))

    @torch.no_grad()
    def generate(self, image: torch.Tensor | EncodedImage, question: str, *, references=(),
                 max_new_tokens: int | None = None, logits_processor=None) -> Generation:
        """Greedy decoding with the KV cache for one uint8 image (H, W, 3); one mask per generated `<obj>`.

        `references` fill the question's `<img.ref></img.ref>` / `<aud.ref></aud.ref>` spans in order.
        `logits_processor(step, logits)` may rewrite each step's (1, V) logits (constrained or scripted decoding).
        `image` may be `encode_image`'s result, so that several questions about one image encode it once.
        """
        max_new = max_new_tokens or self.config.max_new_tokens
        ids, _ = encode(self.tokenizer, question, None, max_tokens=self.config.max_text_tokens)
        references = tuple(references)
        check_references(ids, references)
        encoded = image if isinstance(image, EncodedImage) else self.encode_image(image)
        images, features, image_tokens = encoded.images, encoded.features, encoded.tokens
        spliced = self.reference_tokens(images, features, [references]) if references else None
        embeds, _, _ = self.splice(torch.tensor([ids], device=self.device), image_tokens, spliced)  # (1, L0, D)
        prompt_length = embeds.shape[1]
        limit = self.llama.config.max_position_embeddings
        if prompt_length + max_new > limit:
            raise AnyRefInputError(f"prompt of {prompt_length} positions plus {max_new} new tokens exceeds the "
                                   f"LLM's {limit} positions; shorten the text or lower max_new_tokens")
        llama, cache, qk, states, generated = self.llama, None, None, [], []
        step_input = embeds
        for _ in range(max_new):
            with capture_last_layer(llama.model) as record:
                out = llama.model(inputs_embeds=step_input, cache=cache, use_cache=True)
            cache = out.cache
            qk = record[0] if qk is None else qk.extend(record[0])
            states.append(out.last_hidden_state)
            logits = llama.lm_head(out.last_hidden_state[:, -1])  # (1, V)
            if logits_processor is not None:
                logits = logits_processor(len(generated), logits)
            next_id = int(logits.argmax(-1))
            generated.append(next_id)
            if next_id == self.ids.eos:
                break
            step_input = llama.get_input_embeddings()(torch.tensor([[next_id]], device=self.device))
        hidden = torch.cat(states, dim=1)  # (1, L, D)
        queries = [ObjQuery(batch=0, query=prompt_length - 1 + k, start=prompt_length - 1)
                   for k, tok in enumerate(generated) if tok == self.ids.obj]
        embeddings = hidden.new_zeros((0, hidden.shape[-1]))
        mask_logits = hidden.new_zeros((0, *images.shape[1:3]))
        weights = hidden.new_zeros((0, hidden.shape[1]))
        if queries:
            embeddings, weights = self.obj_embeddings(hidden, qk, queries)
            encoded.sam = encoded.sam or self.sam_embeddings(images)
            mask_logits = self.masks_for(images, embeddings, queries, encoded=encoded.sam, tokens=image_tokens)
        answer = [t for t in generated if t != self.ids.eos]
        text = self.tokenizer.decode(answer, skip_special_tokens=False)
        return Generation(text=text, token_ids=answer, mask_logits=mask_logits, obj_embeddings=embeddings,
                          refocus_weights=weights[:, prompt_length - 1:], prompt_length=prompt_length)

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write config.json, the tokenizer and model.safetensors to a folder (refuses to overwrite unless asked)."""
        from safetensors.torch import save_model

        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise AnyRefCheckpointError(f"{str(path)!r} is not empty; pass overwrite=True to replace it")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / CONFIG_FILE)
        self.tokenizer.save_pretrained(str(path / TOKENIZER_DIR))
        save_model(self, str(path / WEIGHTS_FILE))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "AnyRefModel":
        """Load a folder written by `save_pretrained`; a missing, damaged or mismatched file raises an
        AnyRefCheckpointError (AnyRefConfigError for config.json) that names it. Nothing in it is unpickled."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        if not isinstance(path, (str, Path)):
            raise AnyRefCheckpointError(f"a model folder is a path (str or Path), got {type(path).__name__}")
        path = Path(path)
        missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_DIR) if not (path / name).exists()]
        if missing:
            raise AnyRefCheckpointError(f"{str(path)!r} is not an AnyRef checkpoint: missing {missing}; "
                                        "create one with model.save_pretrained(path) or `anyref train`")
        config = AnyRefConfig.load(path / CONFIG_FILE)
        tokenizer = load_saved_tokenizer(path / TOKENIZER_DIR)
        try:
            model = cls(config, tokenizer=tokenizer)
        except AnyRefError:
            raise
        except Exception as error:  # torch, transformers and peft refuse impossible sizes with many error types
            raise AnyRefCheckpointError(f"{str(path / CONFIG_FILE)!r} describes a model that cannot be built "
                                        f"({type(error).__name__}: {_line(error, -1)}); correct the sizes in it, "
                                        "or save the model again") from None
        weights = path / WEIGHTS_FILE
        try:
            load_model(model, str(weights), strict=True)
        except (SafetensorError, OSError) as error:
            raise AnyRefCheckpointError(f"{str(weights)!r} is not a readable safetensors file ({_line(error)});"
                                        " it is damaged or of another format (pickles are never loaded): save the "
                                        "model again") from None
        except RuntimeError as error:
            raise AnyRefCheckpointError(f"weights in {str(weights)!r} do not match its config.json "
                                        f"({_mismatch(error)}); load them with the config they were saved with"
                                        ) from None
        return model

    @classmethod
    def start_from(cls, path: str | Path, **overrides) -> "AnyRefModel":
        """A saved model's weights in a model whose config differs by top-level `overrides` (e.g. locator=True);
        the parts new in it start fresh. Any other difference is an AnyRefCheckpointError."""
        source = cls.from_pretrained(path)
        config = AnyRefConfig.from_dict({**source.config.to_dict(), **overrides}, source="start_from overrides")
        model = cls(config, tokenizer=source.tokenizer)
        fresh = set(model.state_dict()) - set(source.state_dict())
        try:
            missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
        except RuntimeError as error:  # a weight of another size
            raise AnyRefCheckpointError(f"{str(path)!r} does not fit the model with {overrides} "
                                        f"({_mismatch(error)})") from None
        if unexpected or set(missing) - fresh:
            raise AnyRefCheckpointError(f"{str(path)!r} does not fit the model with {overrides}: missing "
                                        f"{sorted(set(missing) - fresh)[:5]}, unexpected {unexpected[:5]}")
        return model


def load_saved_tokenizer(folder: Path):
    """The tokenizer folder of a saved model, with the paper's special tokens, or an AnyRefCheckpointError."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as error:  # damaged files surface as KeyError, ValueError, OSError or tokenizers' bare Exception
        raise AnyRefCheckpointError(f"the tokenizer in {str(folder)!r} cannot be loaded ({type(error).__name__}: "
                                    f"{_line(error)}); restore its files or save the model again") from None
    absent = [token for token in SPECIAL_TOKENS if token not in tokenizer.get_vocab()]
    if absent:
        raise AnyRefCheckpointError(f"the tokenizer in {str(folder)!r} lacks the special tokens {absent}; save it "
                                    "with model.save_pretrained, which adds them")
    return tokenizer


def _line(error: Exception, index: int = 0) -> str:
    """One non-empty line of an exception's message (the first by default), cut to 300 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[index][:300] if lines else type(error).__name__


def _mismatch(error: RuntimeError) -> str:
    """The first detail of torch's state-dict error: a size mismatch, or missing or unexpected keys."""
    details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    return (details[0] if details else _line(error))[:300]
