"""On-policy distillation on TRL's `DistillationTrainer`: the student samples, the teacher grades every token.

TRL's trainer does the on-policy part and is kept as is: prompts in generation batches (per device batch x
gradient accumulation), the student's samples from transformers `generate` or vLLM (`use_vllm`, colocated
or a `trl vllm-serve` server, weights synced every step), buffering across accumulation steps, and the
PEFT/DDP/FSDP/DeepSpeed plumbing. What it lacks is added here, each in one override:

- GKD's lambda (`_generate_and_score_completions`): a generation batch is sampled by the student with
  probability lmbda, else it is the dataset's own completions (off-policy KD); the coin depends only on
  (seed, step), so a resumed run flips the same coins. TRL's stable trainer is always on-policy and
  `trl.experimental.gkd.GKDTrainer` (which has lambda) computes the loss on full [B, T, V] logits.
- samples per prompt (`_get_train_sampler`): TRL's sampler repeats each prompt once.
- the loss (`compute_loss`): `sft.chunked_kd.chunked_kd_loss`, the loss `sft run --kd_source online/offline`
  uses, so lmbda = 0 is exactly the off-policy KD path, with T^2-scaled temperature, the full vocabulary or
  top-k + tail mass, a sliced vocabulary for lm_heads of different sizes, and several teachers routed per
  row. (TRL's loss ties the divergence temperature to the sampling temperature and has no top-k path.)
- server teachers (`sft.on_policy_teacher.ServerTeacher`): top-k prompt log-probs of the generation batch,
  fetched once per generation batch.
- samples that never close `</think>`: counted, then kept or dropped from the loss (`unclosed_think`).
- tokens/s of generation and of training, logged with the loss.
- colocated vLLM 0.32 (`_reload_colocated_weights`): TRL 1.16 syncs weights with `model.load_weights`, which
  vLLM 0.32 refuses once its kernels have repacked the weights; vLLM's own `reload_weights` is used instead.
"""

import random
import time
from functools import partial

import torch
from trl import DistillationTrainer
from trl.trainer.utils import RepeatSampler, pad

from sft.chunked_kd import DEFAULT_CHUNK_SIZE, chunked_kd_loss
from sft.kd_trainer import lm_head_weight
from sft.lint import training_template
from sft.on_policy_teacher import ModelTeacher, ServerTeacher, model_topk


class OnPolicyDistillTrainer(DistillationTrainer):
    """DistillationTrainer with GKD's lambda, chunked top-k/full-vocabulary losses and routed teachers.

    Args (besides DistillationTrainer's; `teacher_model` is replaced by `teachers`):
        teachers: ModelTeacher / ServerTeacher list; row `teacher_index` picks one (0 without routing).
        lmbda: probability that a generation batch is sampled by the student (else the dataset's completions).
        samples_per_prompt: student samples per prompt in a generation batch.
        kd_temperature: divergence temperature T (loss x T^2); args.temperature is the sampling one.
        teacher_top_k: 0 = full vocabulary; K = teacher top-K + tail bucket.
        kd_chunk_size: tokens per chunk of the fused loss.
        scored_vocab: compare the first this-many vocabulary rows (None = all).
        think_close, unclosed_think: the tag closing the reasoning; `keep` or `drop` samples without it.
    """

    def __init__(
        self,
        *args,
        teachers: list[ModelTeacher | ServerTeacher],
        lmbda: float = 1.0,
        samples_per_prompt: int = 1,
        kd_temperature: float = 1.0,
        teacher_top_k: int = 0,
        kd_chunk_size: int = DEFAULT_CHUNK_SIZE,
        scored_vocab: int | None = None,
        think_close: str = "</think>",
        unclosed_think: str = "keep",
        **kwargs,
    ):
        super().__init__(*args, teacher_model=None, **kwargs)
        self.teachers = teachers
        self.lmbda, self.samples_per_prompt = lmbda, samples_per_prompt
        self.kd_temperature, self.kd_chunk_size = kd_temperature, kd_chunk_size
        self.teacher_top_k = teacher_top_k
        self.scored_vocab, self.think_close, self.unclosed_think = scored_vocab, think_close, unclosed_think
        self._wrapped_teachers = {}
        for index, teacher in enumerate(teachers):
            if isinstance(teacher, ModelTeacher):  # as DistillationTrainer prepares its teacher_model
                self._wrapped_teachers[index] = self.accelerator.prepare_model(
                    teacher.model, evaluation_mode=True
                )
        self._training_template = training_template(self.processing_class, assistant_only_loss=True)
        self._generation_seconds = 0.0
        self._forward_tokens = 0
        if self.use_vllm and self.vllm_mode == "colocate":
            self.vllm_generation.sync_weights = partial(_reload_colocated_weights, self.vllm_generation)

    # --- batches ------------------------------------------------------------------------------------------

    def _get_train_sampler(self, dataset=None):
        """TRL's RepeatSampler with each prompt repeated `samples_per_prompt` times in its generation batch."""
        generation_batch = (
            self.args.per_device_train_batch_size
            * self.accelerator.num_processes
            * self.args.gradient_accumulation_steps
        )
        return RepeatSampler(
            data_source=self.train_dataset if dataset is None else dataset,
            mini_repeat_count=self.samples_per_prompt,
            batch_size=generation_batch // self.samples_per_prompt,
            repeat_count=self.args.gradient_accumulation_steps,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    def on_policy_now(self) -> bool:
        """GKD's coin for the current step: a function of (seed, global_step) only (resume-safe)."""
        return random.Random(f"gkd-{self.args.seed}-{self.state.global_step}").random() < self.lmbda

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        mode = "train" if self.model.training else "eval"
        on_policy = mode == "eval" or self.on_policy_now()
        start = time.perf_counter()
        batch = super()._generate_and_score_completions(inputs) if on_policy else self._dataset_batch(inputs)
        seconds = time.perf_counter() - start
        self._generation_seconds += seconds
        completion_mask = batch["completion_mask"]
        device = completion_mask.device
        loss_mask = completion_mask.clone()
        metrics = self._metrics[mode]
        metrics["on_policy"].append(float(on_policy))
        if on_policy:
            texts = [
                self.processing_class.decode(ids[mask.bool()], skip_special_tokens=False)
                for ids, mask in zip(batch["completion_ids"].cpu(), completion_mask.cpu(), strict=True)
            ]
            unclosed = torch.tensor([self.think_close not in text for text in texts], device=device)
            metrics["think/unclosed_ratio"].append(self.accelerator.gather(unclosed).float().mean().item())
            if self.unclosed_think == "drop":
                loss_mask[unclosed] = 0
            tokens = self.accelerator.gather(completion_mask.sum()).sum().item()
            metrics["tokens_per_s/generation"].append(tokens / max(seconds, 1e-9))
        batch["loss_mask"] = loss_mask
        batch["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        batch["teacher_index"] = torch.tensor([x["teacher_index"] for x in inputs], device=device)
        self._score_with_servers(batch)
        return batch

    def _dataset_batch(self, inputs: list[dict]) -> dict:
        """The off-policy batch: each row's own completion (its assistant turn), laid out as TRL lays out a
        sampled batch (prompts left-padded, completions right-padded). The completion is the training render
        after the generation prompt, up to the end of the assistant mask, cut at max_completion_length."""
        prompt_ids, _, _ = self._tokenize_prompts([x["prompt"] for x in inputs])
        completions = []
        for x, prompt in zip(inputs, prompt_ids, strict=True):
            enc = self.processing_class.apply_chat_template(
                list(x["prompt"]) + list(x["completion"]),
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
                chat_template=self._training_template,
                **self.chat_template_kwargs,
            )
            ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
            if ids[: len(prompt)] != list(prompt) or not any(mask):
                raise ValueError(
                    "a trace row's training render does not start with its generation prompt (see the lint)"
                )
            end = max(i for i, m in enumerate(mask) if m) + 1
            completions.append(ids[len(prompt) : end][: self.max_completion_length])
        if self.model.training:
            self.state.num_input_tokens_seen += sum(map(len, prompt_ids)) + sum(map(len, completions))
        return self._pad_batch(prompt_ids, completions)

    def _pad_batch(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> dict:
        device, pad_id, multiple = (
            self.accelerator.device,
            self._tokenizer.pad_token_id,
            self.pad_to_multiple_of,
        )
        prompts = [torch.tensor(p) for p in prompt_ids]
        completions = [torch.tensor(c, dtype=torch.long) for c in completion_ids]
        return {
            "prompt_ids": pad(prompts, pad_id, "left", multiple).to(device),
            "prompt_mask": pad([torch.ones_like(p) for p in prompts], 0, "left", multiple).to(device),
            "completion_ids": pad(completions, pad_id, "right", multiple).to(device),
            "completion_mask": pad([torch.ones_like(c) for c in completions], 0, "right", multiple).to(
                device
            ),
        }

    def _score_with_servers(self, batch: dict) -> None:
        """Top-k log-probs (B, C, K) of the rows routed to server teachers, once per generation batch."""
        servers = [(i, t) for i, t in enumerate(self.teachers) if isinstance(t, ServerTeacher)]
        if not servers:
            return
        completion_ids, completion_mask = batch["completion_ids"], batch["completion_mask"]
        shape = (*completion_ids.shape, self.teacher_top_k)
        topk_ids = torch.zeros(shape, dtype=torch.long)
        topk_logprobs = torch.zeros(shape, dtype=torch.float32)
        for index, teacher in servers:
            rows = (batch["teacher_index"] == index).nonzero().squeeze(1).tolist()
            sequences, starts = [], []
            for r in rows:
                prompt = batch["prompt_ids"][r][batch["prompt_mask"][r].bool()].tolist()
                sequences.append(prompt + completion_ids[r][completion_mask[r].bool()].tolist())
                starts.append(len(prompt))
            for r, (ids, lps) in zip(rows, teacher.topk(sequences, starts), strict=True):
                topk_ids[r, : len(ids)], topk_logprobs[r, : len(ids)] = ids, lps
        if self.scored_vocab is not None and int(topk_ids.max()) >= self.scored_vocab:
            raise RuntimeError(
                f"a server teacher's top-k holds token ids >= the scored vocabulary ({self.scored_vocab})"
            )
        batch["topk_ids"] = topk_ids.to(completion_ids.device)
        batch["topk_logprobs"] = topk_logprobs.to(completion_ids.device)

    # --- loss ---------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # As DistillationTrainer: the token count of the generation batch (after the `</think>` rule), per process
        if self.model.training and inputs.get("num_items_in_batch") is not None:
            num_items_in_batch = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        student = self.accelerator.unwrap_model(model)
        loss = self._forward_redirection(
            model, student, self._divergence, student, inputs, num_items_in_batch
        )
        return (loss, None) if return_outputs else loss

    def _divergence(self, student, inputs: dict, num_items_in_batch) -> torch.Tensor:
        """Sum over the teachers' rows of sum-over-tokens divergence, / num_items_in_batch (or the local count)."""
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)  # (B, P+C)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        n_completion = inputs["completion_ids"].size(1)
        labels = inputs["completion_ids"].masked_fill(inputs["loss_mask"] == 0, -100)  # (B, C)
        self._forward_tokens += int(attention_mask.sum())
        hidden = self._get_last_hidden_state(student, input_ids, attention_mask, n_completion)  # (B, C, H)
        weight = lm_head_weight(student.get_output_embeddings())[: self.scored_vocab]  # (V', H)
        hidden = hidden.to(weight.device)
        total = hidden.sum() * 0.0  # keeps the graph when no row has a token to score
        counted = torch.zeros((), device=weight.device)
        for index, teacher in enumerate(self.teachers):
            rows = (inputs["teacher_index"] == index).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            row_labels = labels[rows].to(weight.device)
            if isinstance(teacher, ServerTeacher):
                scores = {
                    "topk_ids": inputs["topk_ids"][rows],
                    "topk_logprobs": inputs["topk_logprobs"][rows],
                }
            else:
                scores = self._model_scores(index, input_ids[rows], attention_mask[rows], n_completion)
            kd = chunked_kd_loss(
                hidden[rows], weight, row_labels, beta=self.beta, temperature=self.kd_temperature,
                chunk_size=self.kd_chunk_size, **scores,
            )  # fmt: skip
            n = (row_labels != -100).sum()
            total = total + kd * n  # chunked_kd_loss is a mean over its rows' valid tokens
            counted = counted + n
        return total / (num_items_in_batch if num_items_in_batch is not None else counted.clamp(min=1))

    def _model_scores(self, index: int, input_ids, attention_mask, n_completion: int) -> dict:
        """An in-process teacher's final hidden states + lm_head weight, or its top-k per completion token."""
        wrapped = self._wrapped_teachers[index]
        teacher = self.accelerator.unwrap_model(wrapped)
        with torch.no_grad():
            t_hidden = self._forward_redirection(
                wrapped,
                teacher,
                self._get_last_hidden_state,
                teacher,
                input_ids,
                attention_mask,
                n_completion,
            )  # (b, C, Ht)
        t_weight = lm_head_weight(teacher.get_output_embeddings())[: self.scored_vocab]  # (V', Ht)
        t_hidden = t_hidden.to(t_weight.device)
        if self.teacher_top_k:
            ids, lps = model_topk(t_hidden, t_weight, self.teacher_top_k, self.kd_chunk_size)
            return {"topk_ids": ids, "topk_logprobs": lps}
        return {"teacher_hidden": t_hidden, "teacher_weight": t_weight}

    # --- progress ---------------------------------------------------------------------------------------

    def training_step(self, model, inputs, num_items_in_batch):
        generation_before, tokens_before = self._generation_seconds, self._forward_tokens
        start = time.perf_counter()
        loss = super().training_step(model, inputs, num_items_in_batch)
        seconds = time.perf_counter() - start - (self._generation_seconds - generation_before)
        tokens = self._forward_tokens - tokens_before
        self._metrics["train"]["tokens_per_s/training"].append(tokens / max(seconds, 1e-9))
        return loss


def _reload_colocated_weights(generation) -> None:
    """Push the student's weights into the colocated vLLM engine with vLLM's layerwise `reload_weights`."""
    if generation.enable_sleep_mode:
        generation.llm.wake_up(tags=["weights"])
        generation._llm_weights_sleeping = False
    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner
    runner.reload_weights(weights_iterator=generation._iter_named_params())
    generation.llm.reset_prefix_cache()
