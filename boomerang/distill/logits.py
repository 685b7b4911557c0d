"""The logit terms of the distillation loss, `ce·CE + kl·τ²·KL(p_T/τ ‖ p_S/τ)`, without the full logits.

Computed from the full logits, the loss keeps several fp32 (tokens × vocabulary) tensors alive at once
(1.2 GB for SmolLM2 at 4×256 tokens, most of a GPU for Qwen3's 152k vocabulary at 2×2048).
`logit_distillation_loss` takes the final hidden states and the LM heads instead and walks the tokens
in chunks: each chunk's logits, its loss and the loss's gradient w.r.t. those logits (derived by hand,
see `_ChunkedLogitDistillation`) are computed in the forward pass and pushed through the head at once,
so only one chunk's (chunk × vocabulary) tensors ever exist; backward just scales the stored gradients,
as fused linear-cross-entropy kernels do.

CE is averaged over labelled positions (label −100 is ignored), KL over real positions (`kl_mask`, which may
differ from the labelled set); head matmuls run in the autocast dtype when autocast is on, reductions in
fp32. With no labelled position the CE is 0 (a sum over a count clamped to 1, like the KL's masked mean),
where `F.cross_entropy` returns nan: the gradient is zero either way, and neither the logged CE nor, with a
CE weight of 0, the total loss turns nan. `reference_logit_distillation_loss` is the plain full-logits
computation of the same loss: the yardstick of the tests and the benchmark (`distill.chunk_tokens: 0`).

No maintained fused kernel computes this objective: liger-kernel's fused linear JSD (at β = 0, the same
KL direction) has no τ², masks the KL by the labels and averages both terms over labelled tokens, so it
cannot reproduce a KL over real but unlabelled positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


def _reduction_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for reductions over the vocabulary, or wider when the inputs already are (gradcheck)."""
    return torch.promote_types(dtype, torch.float32)


def _by_rows(reduce, *tensors: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """`reduce` of (chunk × vocabulary) tensors, `rows` rows at a time: its temporaries then take a few rows'
    memory rather than another buffer the size of its inputs."""
    return torch.cat([reduce(*(t[i:i + rows] for t in tensors)) for i in range(0, tensors[0].shape[0], rows)])


def _logsumexp(x: torch.Tensor) -> torch.Tensor:
    return _by_rows(lambda rows: torch.logsumexp(rows, -1, keepdim=True), x)


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ_v p·(log p − log q) per row, summed term by term: as a difference of two sums it loses the small
    KL of a student close to its teacher to cancellation."""
    return _by_rows(lambda lp, lq: (lp - lq).mul_(lp.exp()).sum(-1), log_p, log_q)


def reference_logit_distillation_loss(
    h_s: torch.Tensor, h_t: torch.Tensor, student_head: nn.Linear, teacher_head: nn.Linear,
    labels: torch.Tensor, kl_mask: torch.Tensor, *, temperature: float = 1.0, ce_weight: float = 1.0,
    kl_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same loss from the full logits: the yardstick."""
    s_logits = F.linear(h_s, student_head.weight, student_head.bias)
    s_logits = s_logits.to(_reduction_dtype(s_logits.dtype)).flatten(0, -2)
    with torch.no_grad():
        t_logits = F.linear(h_t, teacher_head.weight, teacher_head.bias)
        t_logp = F.log_softmax(t_logits.to(s_logits.dtype).flatten(0, -2) / temperature, dim=-1)
    labels, mask = labels.flatten(), kl_mask.flatten().to(s_logits.dtype)
    ce = F.cross_entropy(s_logits, labels, reduction="sum") / (labels != IGNORE_INDEX).sum().clamp_min(1)
    logp = F.log_softmax(s_logits / temperature, dim=-1)
    kl = ((t_logp.exp() * (t_logp - logp)).sum(-1) * mask).sum() / mask.sum().clamp_min(1) * temperature**2
    return ce_weight * ce + kl_weight * kl, ce.detach(), kl.detach()


class _ChunkedLogitDistillation(torch.autograd.Function):
    """Loss and all its gradients in one chunked forward pass; backward scales them by grad_output.

    Per position i with student logits s_i, q_i = softmax(s_i/τ), p_T,i = softmax(t_i/τ), and weights
    c_i = ce·[label_i ≠ −100] / #labelled, k_i = kl·m_i / Σm (m = kl_mask):
      ∂(ce·CE)/∂s_i    = c_i · (softmax(s_i) − onehot(label_i))
      ∂(kl·τ²·KL)/∂s_i = k_i · τ² · (q_i − p_T,i)/τ = k_i·τ · (q_i − p_T,i)   (as Σ_v p_T,i(v) = 1)
    and then ∂/∂h_s = g·W, ∂/∂W = gᵀ·h_s, ∂/∂b = Σ_i g_i for g = the sum of the two.
    """

    @staticmethod
    def forward(ctx, h_s, w_s, b_s, h_t, w_t, b_t, labels, kl_mask, temperature, ce_weight, kl_weight,
                chunk_size, compute_dtype, grad_enabled):
        need_h, need_w, need_b = (grad_enabled and need for need in ctx.needs_input_grad[:3])
        want_grad = need_h or need_w or need_b

        def to_compute(x):  # what autocast would hand the matmul
            return x if x is None or compute_dtype is None else x.to(compute_dtype)

        w_s_c, b_s_c = to_compute(w_s), to_compute(b_s)
        w_t_c = w_s_c if w_t is w_s else to_compute(w_t)  # one cast when both read the same head (the tail term)
        b_t_c = b_s_c if b_t is b_s else to_compute(b_t)
        reduce_dtype = _reduction_dtype(compute_dtype or h_s.dtype)

        labelled = labels != IGNORE_INDEX
        real = kl_mask.to(reduce_dtype)
        n_labelled, n_real = labelled.sum().clamp_min(1), real.sum().clamp_min(1)
        ce_row_scale = labelled.to(reduce_dtype) * (ce_weight / n_labelled)  # c_i
        kl_row_scale = real * (kl_weight * temperature / n_real)  # k_i·τ

        grad_h = torch.zeros_like(h_s) if need_h else None
        grad_w = torch.zeros_like(w_s, dtype=_reduction_dtype(w_s.dtype)) if need_w else None
        grad_b = torch.zeros_like(b_s, dtype=_reduction_dtype(b_s.dtype)) if need_b else None
        ce_sum = torch.zeros((), dtype=reduce_dtype, device=h_s.device)
        kl_sum = torch.zeros((), dtype=reduce_dtype, device=h_s.device)

        for start in range(0, h_s.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            hs_chunk = to_compute(h_s[rows])
            target = labels[rows].clamp_min(0)[:, None]  # ignored rows read column 0, then weigh nothing

            log_p_t = F.linear(to_compute(h_t[rows]), w_t_c, b_t_c).to(reduce_dtype)
            log_p_t.sub_(_logsumexp(log_p_t.div_(temperature) if temperature != 1 else log_p_t))

            s = F.linear(hs_chunk, w_s_c, b_s_c).to(reduce_dtype)
            log_z = _logsumexp(s)  # CE_i = log Z_i − s_i[label_i]
            ce_sum += torch.where(labelled[rows], log_z.squeeze(1) - s.gather(1, target).squeeze(1), 0).sum()
            log_z_tau = log_z if temperature == 1 else _logsumexp(s.div_(temperature))
            log_q = s.sub_(log_z_tau)  # in s's buffer
            del s
            kl_sum += (_kl_rows(log_p_t, log_q) * real[rows]).sum()
            if not want_grad:
                continue

            # g = c·softmax(s) + kτ·(q − p_T) − c·onehot(label), built in place in log p_T's buffer
            c, k_tau = ce_row_scale[rows, None], kl_row_scale[rows, None]
            grad_logits = log_p_t.exp_().mul_(-k_tau)
            del log_p_t
            if temperature != 1:  # softmax(s) = exp(τ·log q + τ·log Z_τ − log Z): one more buffer
                grad_logits.addcmul_(log_q.mul(temperature).add_(temperature * log_z_tau - log_z).exp_(), c)
            q = log_q.exp_()
            del log_q
            grad_logits.addcmul_(q, k_tau + c if temperature == 1 else k_tau)  # at τ = 1, softmax(s) = q
            grad_logits.scatter_add_(1, target, -c)
            del q

            if need_b:
                grad_b += grad_logits.sum(0)
            grad_logits = grad_logits.to(w_s_c.dtype)
            if need_h:
                grad_h[rows] = grad_logits @ w_s_c
            if need_w:
                if grad_w.dtype == grad_logits.dtype == hs_chunk.dtype:
                    grad_w.addmm_(grad_logits.T, hs_chunk)
                else:
                    grad_w += grad_logits.T @ hs_chunk

        ce = ce_sum / n_labelled
        kl = kl_sum / n_real * temperature**2
        ctx.save_for_backward(grad_h, None if grad_w is None else grad_w.to(w_s.dtype),
                              None if grad_b is None else grad_b.to(b_s.dtype))
        ctx.mark_non_differentiable(ce, kl)
        return ce_weight * ce + kl_weight * kl, ce, kl

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_kl):
        scaled = [None if g is None else g * grad_loss.to(g.dtype) for g in ctx.saved_tensors]
        return (*scaled, *[None] * 11)


def logit_distillation_loss(
    h_s: torch.Tensor, h_t: torch.Tensor, student_head: nn.Linear, teacher_head: nn.Linear,
    labels: torch.Tensor, kl_mask: torch.Tensor, *, temperature: float = 1.0, ce_weight: float = 1.0,
    kl_weight: float = 1.0, chunk_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`ce_weight·CE + kl_weight·τ²·KL(p_T/τ ‖ p_S/τ)` from final hidden states, `chunk_size` tokens at a time.

    `h_s` (…, H) and `h_t` (…, H') are the hidden states after the final norm; `labels` (…) holds the
    next-token ids with −100 where there is none, `kl_mask` (…) the real tokens the KL is averaged over.
    The student head's weight and bias get gradients when they require them (frozen in some presets;
    the teacher's own head when the student's state is read through the teacher's tail); the teacher
    gets none. Returns the weighted loss and the detached CE and τ²·KL for logging.

    The loss's memory is about 2.5 fp32 (chunk_size × vocabulary) buffers (3.5 at τ ≠ 1), each head once
    in the autocast dtype (once in all when both are the same tensor) and the head's gradient when it has
    one. Each chunk also reads the heads and adds into the head's gradient (a vocabulary × hidden cost),
    so very small chunks cost time.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    device_type = h_s.device.type
    compute_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    with torch.autocast(device_type, enabled=False):  # casts are explicit inside, as autocast would do them
        return _ChunkedLogitDistillation.apply(
            h_s.flatten(0, -2), student_head.weight, student_head.bias,
            h_t.flatten(0, -2), teacher_head.weight, teacher_head.bias,
            labels.flatten(), kl_mask.flatten(), float(temperature), float(ce_weight), float(kl_weight),
            chunk_size, compute_dtype, torch.is_grad_enabled(),
        )
