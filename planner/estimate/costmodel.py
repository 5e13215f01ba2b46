"""The cost model: a fine-tune's training loop time and peak memory from the model's shape, the data and the device.

Pure. Where no prior run of the plan's device kind measured a speed, the loop's time is
derived instead of scaled:

``step = max(tokens_per_step x FLOPs_per_token / (peak x utilisation), dispatch_per_step)``
(the sum on a CPU, whose cores do both)

* tokens per step: ``batch x`` the tokens of a padded sample (each batch is padded to its
  longest example, truncated at ``max_seq_len``) or ``max_seq_len`` when packed;
* FLOPs per token, from the shape: the matrix products of every layer (``2 x`` their
  weights), attention over the average causal context (``4 x`` query width ``x`` context),
  the output head; training multiplies them: a full fine-tune runs forward and twice that
  backward (``3x``), LoRA skips the frozen weights' gradients (``2x`` plus its small
  adapters), activation checkpointing repeats the forward (``+1x``);
* peak: the device's dense data-sheet figure for the training dtype
  (:mod:`planner.spec.hardware`); utilisation: the share of it a torchtune eager step
  sustains on large matrices, :data:`DEFAULT_UTILISATION` per recipe until runs on a GPU
  measured it (then the median of theirs, :func:`learned_utilisation`);
* dispatch per step: the host's kernel launches, the loss's sync and the optimizer, which is
  what bounds short sequences and small models (:data:`GPU_STEP_OVERHEAD_S`).

Peak memory follows the same shape: weights, the adapters with their gradients and AdamW
states, activations per token per layer (:func:`peak_memory`), the logits; a prior's logged
peak of the same model calibrates the per-sample part (:func:`calibrated_peak`).
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from planner.spec.hardware import Device
from planner.torchtune.shapes import ModelShape

#: Characters per token of English text under the BPE tokenizers of Llama 3, Qwen 2.5 and
#: Mistral (3.5-4.5 measured on prose; code and numbers run shorter). Used when no
#: tokenizer counted the dataset, and said so.
CHARS_PER_TOKEN = 4.0

#: Tokens the chat template and BOS/EOS add around each example (Llama 3's header
#: tokens, Llama 2's ``[INST]`` ... ``[/INST]``: 8-16).
TEMPLATE_TOKENS = 12

#: Share of the device's dense peak a torchtune eager training step sustains on large
#: matrices (bf16, no compile). LoRA's backward skips the weight gradients, whose large
#: products run best, so it sits a little below a full fine-tune. Public torchtune and
#: PEFT figures for 7-8B LoRA on A100/H100/4090 sit at 0.3-0.5 of peak.
DEFAULT_UTILISATION = {"lora": 0.35, "full": 0.40}

#: The same on a CPU: the oneDNN/MKL kernels reach ~0.3 of the FMA peak on these sizes.
DEFAULT_CPU_UTILISATION = 0.3

#: The host's time per optimizer step on a GPU: a fixed part (optimizer, loss sync, logging,
#: collating the batch) and a part per decoder layer (eager PyTorch dispatches ~100 kernels
#: per layer forward and backward at ~10 us each). The GPU runs while the host queues, so a
#: step takes the longer of this and the FLOPs: a 16-layer model cannot step faster than ~21 ms.
GPU_STEP_OVERHEAD_S = (0.005, 0.001)

#: The same on a CPU (Python and dispatch per op): the 2-layer example model steps in ~21 ms
#: at batch 4 on a 2-core machine, ~5 ms of it once per optimizer step (measured with
#: gradient accumulation 1, 2 and 4), its FLOPs a fraction of a millisecond.
CPU_STEP_OVERHEAD_S = (0.005, 0.007)

#: Bytes per element of the training dtype.
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

#: Allocator workspace (cuBLAS, SDPA and temporary buffers) on top of the tensors, GiB.
WORKSPACE_GIB = 0.6

#: A CPU training process before its tensors: the interpreter with torch, torchtune and
#: torchao imported (0.40 GiB measured here), the tokenizer and the dataset: whole demo
#: trainings peaked at 0.46 GiB here and 0.55 GiB under CI's Slurm job.
CPU_PROCESS_GIB = 0.50

#: Share of the device's memory a batch may use: torch reserves more than it allocates.
MEMORY_HEADROOM = 0.85

#: Batch sizes batch advice considers, smallest first.
BATCH_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)

GIB = 1024**3


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenStats:
    """Tokens per training example, sorted, and how they were obtained.

    Attributes:
        lengths: tokens per example (template included), ascending.
        counted: True when a tokenizer counted them; False for the characters estimate.
    """

    lengths: tuple[int, ...]
    counted: bool = False
    # Figures by (what, batch, max_seq_len): a 10,000-run plan asks the same few of a 100,000-example split.
    _memo: dict[tuple[str, int, int | None], float] = field(default_factory=dict, compare=False, repr=False)
    _scaled: dict[float, "TokenStats"] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_chars(cls, chars: Iterable[int]) -> "TokenStats":
        """The estimate from characters per example (:data:`CHARS_PER_TOKEN`, :data:`TEMPLATE_TOKENS`)."""
        return cls(tuple(sorted(math.ceil(c / CHARS_PER_TOKEN) + TEMPLATE_TOKENS for c in chars)), False)

    def scaled(self, factor: float) -> "TokenStats":
        """The same examples with every length times ``factor`` (a measured tokens-per-example correction)."""
        if factor not in self._scaled:
            self._scaled[factor] = TokenStats(tuple(max(1, round(n * factor)) for n in self.lengths), self.counted)
        return self._scaled[factor]

    def how(self) -> str:
        return "counted with the model's tokenizer" if self.counted else (
            f"estimated at {CHARS_PER_TOKEN:g} characters per token + {TEMPLATE_TOKENS} template tokens (no tokenizer loaded)")

    def mean(self, max_seq_len: int | None) -> float:
        key = ("mean", 0, max_seq_len)
        if key not in self._memo:
            cap = max_seq_len or math.inf
            self._memo[key] = statistics.fmean(min(n, cap) for n in self.lengths) if self.lengths else 0.0
        return self._memo[key]

    def quantile(self, q: float) -> int:
        if not self.lengths:
            return 0
        return self.lengths[min(len(self.lengths) - 1, int(q * len(self.lengths)))]

    def truncated(self, max_seq_len: int | None) -> int:
        """Examples longer than ``max_seq_len`` (torchtune cuts them)."""
        if not max_seq_len:
            return 0
        return len(self.lengths) - bisect.bisect_right(self.lengths, max_seq_len)

    def padded_length(self, batch: int, max_seq_len: int | None) -> float:
        """Expected length of a batch padded to its longest example, truncated at ``max_seq_len``.

        The expected maximum of ``batch`` examples drawn at random: with the lengths
        sorted, the i-th smallest is the maximum with probability ``(i/n)^b - ((i-1)/n)^b``.
        """
        key = ("padded", batch, max_seq_len)
        if key in self._memo:
            return self._memo[key]
        n = len(self.lengths)
        if not n:
            return 0.0
        cap = max_seq_len or math.inf
        b = max(batch, 1)
        total = 0.0
        prev = 0.0
        for i, length in enumerate(self.lengths, 1):
            cur = (i / n) ** b
            total += min(length, cap) * (cur - prev)
            prev = cur
        self._memo[key] = total
        return total


# --------------------------------------------------------------------------- FLOPs


#: LoRA's adapted projections in the planner's recipes: q, v, output and the three MLP ones.
LORA_MODULES = ("q", "v", "o", "gate", "up", "down")


def _projections(s: ModelShape) -> dict[str, tuple[int, int]]:
    q = s.num_heads * s.head_dim
    kv = s.num_kv_heads * s.head_dim
    return {"q": (s.hidden_size, q), "k": (s.hidden_size, kv), "v": (s.hidden_size, kv), "o": (q, s.hidden_size),
            "gate": (s.hidden_size, s.intermediate_size), "up": (s.hidden_size, s.intermediate_size),
            "down": (s.intermediate_size, s.hidden_size)}


def lora_parameters(s: ModelShape, rank: int, modules: Sequence[str] = LORA_MODULES) -> int:
    """Trainable parameters of the adapters: ``rank x (in + out)`` per adapted projection per layer."""
    proj = _projections(s)
    return s.num_layers * sum(rank * (proj[m][0] + proj[m][1]) for m in modules)


@dataclass(frozen=True)
class Work:
    """FLOPs per trained token and their parts.

    Attributes:
        matmul: forward FLOPs per token of the layers' projections.
        attention: forward FLOPs per token of attention's two products.
        head: forward FLOPs per token of the output projection.
        adapters: forward FLOPs per token of the LoRA adapters.
        per_token: training FLOPs per token, multipliers applied.
        formula: how ``per_token`` was put together, for the design log.
    """

    matmul: float
    attention: float
    head: float
    adapters: float
    per_token: float
    formula: str


def flops_per_token(
    s: ModelShape,
    context: float,
    *,
    kind: str = "lora",
    lora_rank: int | None = None,
    activation_checkpointing: bool = False,
) -> Work:
    """Training FLOPs per token of a decoder from its shape.

    Args:
        s: the shape.
        context: average positions a token attends to (half the padded length, causal).
        kind: ``lora`` or ``full``.
        lora_rank: the adapters' rank (LoRA).
        activation_checkpointing: whether the forward runs twice.

    Returns:
        The :class:`Work`.
    """
    proj = _projections(s)
    matmul = 2.0 * s.num_layers * sum(i * o for i, o in proj.values())
    attention = 4.0 * s.num_layers * s.num_heads * s.head_dim * context
    head = 2.0 * s.hidden_size * s.vocab_size
    adapters = 2.0 * lora_parameters(s, lora_rank) if kind == "lora" and lora_rank else 0.0
    layers_fwd = matmul + attention + adapters
    if kind == "full":
        total = 3 * (matmul + head) + 3 * attention
        words = "3 x (projections + head) + 3 x attention (forward, then gradients of inputs and weights)"
    else:
        # Frozen weights need only their inputs' gradients (1x), attention's backward is 2x
        # its forward, the adapters train as a full fine-tune would.
        total = 2 * (matmul + head) + 3 * attention + 3 * adapters
        words = "2 x (projections + head) + 3 x attention + 3 x adapters (LoRA: no gradients for frozen weights)"
    if activation_checkpointing:
        total += layers_fwd
        words += " + the layers' forward again (activation checkpointing)"
    return Work(matmul, attention, head, adapters, total, words)


# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class LoopCost:
    """A training loop derived from the cost model.

    Attributes:
        seconds: the whole loop (every epoch).
        seconds_per_epoch: one epoch.
        step_seconds: one optimizer step.
        steps_per_epoch: optimizer steps per epoch.
        tokens_per_step: tokens one optimizer step processes on one device (padding included).
        work: FLOPs per token.
        utilisation: the share of peak assumed.
        peak_tflops: the device's peak for the dtype (all cores, on a CPU).
        utilisation_source: where the utilisation came from.
        compute_seconds: one step's FLOPs at the sustained throughput.
        dispatch_seconds: one step's host dispatch.
        lines: the derivation, one calculation per entry, for the design log.
    """

    seconds: float
    seconds_per_epoch: float
    step_seconds: float
    steps_per_epoch: int
    tokens_per_step: float
    work: Work
    utilisation: float
    peak_tflops: float
    utilisation_source: str = ""
    lines: list[str] = field(default_factory=list)
    compute_seconds: float = 0.0
    dispatch_seconds: float = 0.0


def step_overhead(device: Device, layers: int, micro_batches: int = 1) -> float:
    """Seconds of the host's dispatch per optimizer step (see :data:`GPU_STEP_OVERHEAD_S`).

    The fixed part (optimizer, loss sync, logging) comes once per optimizer step; the part per
    layer with every micro-batch of gradient accumulation.
    """
    fixed, per_layer = CPU_STEP_OVERHEAD_S if device.cpu else GPU_STEP_OVERHEAD_S
    return fixed + per_layer * layers * max(micro_batches, 1)


def _g(x: float) -> str:
    """A FLOP count or rate as the log writes it: 2.48e9."""
    return f"{x:.3g}"


def loop_cost(
    s: ModelShape,
    tokens: TokenStats,
    device: Device,
    *,
    samples: int,
    batch_size: int,
    gradient_accumulation_steps: int = 1,
    gpus: int = 1,
    epochs: int = 1,
    max_seq_len: int | None = None,
    packed: bool = False,
    kind: str = "lora",
    lora_rank: int | None = None,
    dtype: str = "bf16",
    activation_checkpointing: bool = False,
    utilisation: float | None = None,
    utilisation_source: str | None = None,
    cores: int = 1,
    max_steps_per_epoch: int | None = None,
) -> LoopCost:
    """The training loop's time from the work and the device.

    Args:
        s: the model's shape.
        tokens: tokens per training example.
        device: the accelerator (or CPU) each process runs on.
        samples: training examples per epoch.
        batch_size: examples per micro-batch and device.
        gradient_accumulation_steps: micro-batches per optimizer step.
        gpus: processes (one device each) splitting the samples.
        epochs: epochs.
        max_seq_len: truncation length (None: none).
        packed: whether examples are packed into ``max_seq_len`` sequences.
        kind: ``lora`` or ``full``.
        lora_rank: LoRA rank.
        dtype: training dtype.
        activation_checkpointing: recipe setting.
        utilisation: share of peak (None: :data:`DEFAULT_UTILISATION` for the recipe).
        utilisation_source: where ``utilisation`` came from, for the log.
        cores: CPU cores of a CPU job.
        max_steps_per_epoch: the recipe's cap.

    Returns:
        The :class:`LoopCost`.
    """
    gpus = max(gpus, 1)
    if packed and max_seq_len:
        # Packing concatenates examples into full sequences: every token is real, and the
        # dataset has as many rows as it takes sequences to hold them.
        total_tokens = tokens.mean(max_seq_len) * samples
        # torchtune does not split an example across rows: each row's end is left short by
        # half an example on average.
        room = max(max_seq_len - tokens.mean(max_seq_len) / 2, 1.0)
        rows = max(1, math.ceil(total_tokens / room))
        length = float(max_seq_len)
        length_line = (f"packed: {samples} examples x {tokens.mean(max_seq_len):.0f} tokens = {total_tokens:.0f} tokens "
                       f"in {rows} sequences of {max_seq_len}")
    else:
        rows = samples
        length = tokens.padded_length(batch_size, max_seq_len)
        length_line = (f"tokens_per_example: median {tokens.quantile(0.5)}, p95 {tokens.quantile(0.95)}, max {tokens.quantile(1.0)} "
                       f"({tokens.how()}); padded to the batch's longest"
                       + (f", truncated at {max_seq_len}" if max_seq_len else "") + f": {length:.0f}")
    steps = (rows // max(1, batch_size * gpus)) // max(1, gradient_accumulation_steps)
    if max_steps_per_epoch:
        steps = min(steps, int(max_steps_per_epoch))
    per_step_tokens = batch_size * gradient_accumulation_steps * length
    work = flops_per_token(s, length / 2, kind=kind, lora_rank=lora_rank, activation_checkpointing=activation_checkpointing)
    if utilisation is None:
        utilisation = DEFAULT_CPU_UTILISATION if device.cpu else DEFAULT_UTILISATION.get(kind, DEFAULT_UTILISATION["lora"])
        utilisation_source = utilisation_source or f"default for {'a CPU' if device.cpu else kind + ' on a GPU'}"
    peak = device.peak_tflops(dtype, cores) * 1e12
    sustained = peak * utilisation
    compute = per_step_tokens * work.per_token / sustained
    overhead = step_overhead(device, s.num_layers, gradient_accumulation_steps)
    # A GPU computes while the host queues the next kernels: the longer of the two. A CPU
    # does both on the same cores: the sum.
    step = compute + overhead if device.cpu else max(compute, overhead)
    per_epoch = steps * step
    lines = [
        length_line,
        f"tokens_per_step = {batch_size} x {gradient_accumulation_steps} x {length:.0f} = {per_step_tokens:.0f}"
        + (f" per device ({gpus} devices)" if gpus > 1 else ""),
        f"FLOPs_per_token = {work.formula} = {_g(work.per_token)} (projections {_g(work.matmul)}, attention "
        f"{_g(work.attention)} at context {length / 2:.0f}, head {_g(work.head)}, adapters {_g(work.adapters)})",
        f"throughput = {device.label} {dtype} peak {_g(peak / 1e12)} TFLOP/s" + (f" ({cores} core{'s' if cores != 1 else ''})" if device.cpu else "")
        + f" x utilisation {utilisation:.2g} ({utilisation_source}) = {_g(sustained / 1e12)} TFLOP/s",
        f"step = {per_step_tokens:.0f} x {_g(work.per_token)} / {_g(sustained)} = {compute * 1000:.1f} ms of compute"
        + (f" + {overhead * 1000:.0f} ms of dispatch" if device.cpu else f", at least {overhead * 1000:.0f} ms of dispatch")
        + f" = {step * 1000:.1f} ms",
        f"steps_per_epoch = {rows}/{batch_size}" + (f"/{gpus} devices" if gpus > 1 else "")
        + (f"/{gradient_accumulation_steps}" if gradient_accumulation_steps > 1 else "")
        + f" = {steps}, time_per_epoch = {steps} x {step:.3g}s ≈ {per_epoch:.0f}s",
    ]
    return LoopCost(per_epoch * epochs, per_epoch, step, steps, per_step_tokens, work, utilisation, peak / 1e12,
                    utilisation_source or "given", lines, compute, overhead)


@dataclass(frozen=True)
class StepFit:
    """A step-time model fitted to finished runs of one model on one device: ``step = a x dispatch + b x compute``.

    The cost model splits a step into the host's dispatch and the device's compute; the
    user's runs say how large each really is. On a CPU the two add up and two or more runs
    whose split differs fit both scales (least squares, neither below zero); one run, or runs
    with the same split, fit one scale for both. On a GPU the step is the longer of the two
    and one scale is fitted.

    Attributes:
        dispatch_scale: ``a``.
        compute_scale: ``b``.
        runs: how many runs it was fitted to.
        cpu: whether the parts add up (CPU) or overlap (GPU).
    """

    dispatch_scale: float
    compute_scale: float
    runs: int
    cpu: bool

    def step(self, dispatch: float, compute: float) -> float:
        if self.cpu:
            return self.dispatch_scale * dispatch + self.compute_scale * compute
        return max(self.dispatch_scale * dispatch, self.compute_scale * compute)

    def text(self) -> str:
        if self.cpu and self.dispatch_scale != self.compute_scale:
            return f"step = {self.dispatch_scale:.3g} x dispatch + {self.compute_scale:.3g} x compute"
        return f"step = {self.compute_scale:.3g} x the modelled step"


def fit_steps(points: Sequence[tuple[float, float, float]], cpu: bool) -> StepFit | None:
    """Fit :class:`StepFit` to ``(modelled dispatch, modelled compute, measured step)`` per run, seconds."""
    pts = [(d, c, y) for d, c, y in points if y > 0 and (d > 0 or c > 0)]
    if not pts:
        return None
    if not cpu:
        k = statistics.median(y / max(d, c) for d, c, y in pts)
        return StepFit(k, k, len(pts), cpu)
    ratios = [c / d for d, c, _ in pts if d > 0]
    spread = len(ratios) == len(pts) and max(ratios) > 1.2 * min(ratios)
    if len(pts) >= 2 and spread:
        sdd = sum(d * d for d, _, _ in pts)
        scc = sum(c * c for _, c, _ in pts)
        sdc = sum(d * c for d, c, _ in pts)
        sdy = sum(d * y for d, _, y in pts)
        scy = sum(c * y for _, c, y in pts)
        det = sdd * scc - sdc * sdc
        if det > 0:
            a = (sdy * scc - scy * sdc) / det
            b = (scy * sdd - sdy * sdc) / det
            if a < 0:
                a, b = 0.0, scy / scc
            elif b < 0:
                a, b = sdy / sdd, 0.0
            return StepFit(a, b, len(pts), cpu)
    k = statistics.median(y / (d + c) for d, c, y in pts)
    return StepFit(k, k, len(pts), cpu)


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak memory of one training process, GiB, by part.

    Attributes:
        weights: the model's weights in the training dtype.
        adapters: trainable parameters with their gradients and two AdamW states.
        activations: what the forward keeps for the backward.
        logits: the output logits and their loss (chunked, as the recipes configure).
        workspace: allocator workspace.
        total: the sum.
    """

    weights: float
    adapters: float
    activations: float
    logits: float
    workspace: float

    @property
    def total(self) -> float:
        return self.weights + self.adapters + self.activations + self.logits + self.workspace

    def text(self, cpu: bool = False) -> str:
        return (f"weights {self.weights:.3g} + adapters and optimizer {self.adapters:.3g} + activations "
                f"{self.activations:.3g} + logits {self.logits:.3g} + {'process' if cpu else 'workspace'} "
                f"{self.workspace:.3g} = {self.total:.3g} GiB")


def activation_elements_per_token_layer(s: ModelShape, kind: str = "lora") -> float:
    """Elements one decoder layer keeps per token for the backward, without checkpointing.

    The two RMSNorms keep their fp32 input and bf16 output (3 hidden widths each, in bf16
    units), attention keeps q, k, v and its output, the SwiGLU MLP its gate, up, the gate's
    activation and their product (4 intermediate widths); LoRA's rank-wide intermediates
    are small; a full fine-tune also keeps every projection's input (counted in the above).
    """
    q = s.num_heads * s.head_dim
    kv = s.num_kv_heads * s.head_dim
    return 6 * s.hidden_size + 2 * q + 2 * kv + 4 * s.intermediate_size


def peak_memory(
    s: ModelShape,
    *,
    batch_size: int,
    sequence: float,
    kind: str = "lora",
    lora_rank: int | None = None,
    dtype: str = "bf16",
    activation_checkpointing: bool = False,
    cpu: bool = False,
) -> MemoryEstimate:
    """Predicted peak allocated memory of one training process (what torchtune logs as allocation).

    On a CPU (``cpu``) the figure is the process's resident memory: the same tensors plus
    the process itself (:data:`CPU_PROCESS_GIB`) in place of the GPU allocator's workspace.

    Args:
        s: the shape.
        batch_size: examples per micro-batch.
        sequence: tokens per (padded or packed) example.
        kind: ``lora`` or ``full``.
        lora_rank: LoRA rank.
        dtype: training dtype.
        activation_checkpointing: keep only each layer's input, recompute the rest.
        cpu: a CPU process (resident memory).

    Returns:
        The :class:`MemoryEstimate`.
    """
    b = DTYPE_BYTES.get(dtype, 2)
    tokens = batch_size * sequence
    weights = s.param_count * b / GIB
    trainable = lora_parameters(s, lora_rank or 8) if kind == "lora" else s.param_count
    # fp32 AdamW states for a full fine-tune in bf16 would be 8 bytes; torchtune keeps them
    # in the parameters' dtype: parameter, gradient and two states.
    adapters = trainable * b * (3 if kind == "full" else 4) / GIB
    per_layer = activation_elements_per_token_layer(s, kind) * b
    if activation_checkpointing:
        acts = tokens * (s.num_layers * s.hidden_size * b + per_layer) / GIB
    else:
        acts = tokens * s.num_layers * per_layer / GIB
    # Logits in the dtype, their chunked fp32 upcast and its gradient.
    logits = tokens * s.vocab_size * (b + 2) / GIB
    return MemoryEstimate(weights, adapters, acts, logits, CPU_PROCESS_GIB if cpu else WORKSPACE_GIB)


def calibrated_peak(predicted: MemoryEstimate, batch_size: int, logged: float, logged_batch: int, target_batch: int) -> float:
    """A peak at ``target_batch`` from a prior's logged peak of the same model and data at ``logged_batch``.

    The per-example part (activations and logits) is what the prior measured beyond the
    fixed part (weights, adapters, workspace), scaled by the batch; the fixed part stays.
    ``predicted`` is the model's estimate at ``batch_size`` (its fixed part is used).
    """
    fixed = predicted.weights + predicted.adapters + predicted.workspace
    per_example = max(logged - fixed, 0.0) / max(logged_batch, 1)
    return fixed + per_example * target_batch


def largest_batch(fits: Iterable[tuple[int, float]], capacity_gib: float) -> tuple[int, float] | None:
    """The largest ``(batch, predicted peak)`` whose peak is within ``capacity_gib``; None when none is."""
    best = None
    for batch, peak in fits:
        if peak <= capacity_gib:
            best = (batch, peak)
    return best
