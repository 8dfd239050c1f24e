package backendtest

// Rows for Linear, Attention, LayerNorm, GroupNorm and NormalizeHeads.
func matmulNormAttentionCases() []Case { return nil }
