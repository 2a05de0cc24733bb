"""The non-spatial conditions as one cross-attention token sequence, with per-modality nulls.

Text tokens (frozen BERT embeddings, projected) and colour tokens (foreground and background RGB
through a small MLP) are concatenated; each token gets a learned modality embedding so attention can
tell them apart. Dropping a modality (training dropout or classifier-free guidance) swaps its tokens
for learned null tokens, per sample.
"""

from __future__ import annotations

import torch
from torch import nn

MODALITIES = ("mask", "text", "colour")


class ConditionTokenizer(nn.Module):
    """Builds ``(B, L_text + 2, cross_attention_dim)`` tokens and their attention mask.

    Args:
        text_embed_dim: width of the frozen text encoder's token embeddings (384 for MiniLM).
        cross_attention_dim: width of the UNet's cross-attention.
        colour_hidden_dim: hidden width of the colour MLP.
    """

    def __init__(self, text_embed_dim: int, cross_attention_dim: int, colour_hidden_dim: int = 64):
        super().__init__()
        self.text_proj = nn.Sequential(
            nn.LayerNorm(text_embed_dim), nn.Linear(text_embed_dim, cross_attention_dim)
        )
        # One MLP shared by the fg and bg colour; which is which comes from `colour_role`.
        self.colour_mlp = nn.Sequential(
            nn.Linear(3, colour_hidden_dim), nn.SiLU(), nn.Linear(colour_hidden_dim, cross_attention_dim)
        )
        self.colour_role = nn.Parameter(torch.randn(2, cross_attention_dim) * 0.02)
        self.modality_embed = nn.Embedding(2, cross_attention_dim)  # 0 = text, 1 = colour
        self.null_text = nn.Parameter(torch.randn(1, cross_attention_dim) * 0.02)
        self.null_colour = nn.Parameter(torch.randn(2, cross_attention_dim) * 0.02)

    def forward(
        self,
        text_embeds: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        colour: torch.Tensor | None,
        drop_text: torch.Tensor,
        drop_colour: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and mask; ``drop_*`` are ``(B,)`` bool, already True where the input is None."""
        batch = drop_text.shape[0]
        dim = self.null_text.shape[-1]
        dtype = self.null_text.dtype
        if text_embeds is None:
            text = self.null_text.expand(batch, 1, dim)
            keep_text = torch.ones(batch, 1, dtype=torch.bool, device=text.device)
        else:
            text = self.text_proj(text_embeds.to(dtype))
            keep_text = (
                torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
                if text_mask is None
                else text_mask.to(torch.bool)
            )
            # Null text = the learned token in slot 0, every other slot masked out.
            null = torch.zeros_like(text)
            null[:, :1] = self.null_text
            null_keep = torch.zeros_like(keep_text)
            null_keep[:, 0] = True
            text = torch.where(drop_text[:, None, None], null, text)
            keep_text = torch.where(drop_text[:, None], null_keep, keep_text)
        text = text + self.modality_embed.weight[0]

        if colour is None:
            col = self.null_colour.expand(batch, 2, dim)
        else:
            col = self.colour_mlp(colour.to(dtype).reshape(batch, 2, 3)) + self.colour_role
            col = torch.where(drop_colour[:, None, None], self.null_colour.expand_as(col), col)
        col = col + self.modality_embed.weight[1]
        keep_col = torch.ones(batch, 2, dtype=torch.bool, device=col.device)
        return torch.cat([text, col], dim=1), torch.cat([keep_text, keep_col], dim=1)
