package vqvae

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// level is one resolution of the encoder or decoder: res blocks, each optionally followed by an attention
// block (only at the coarsest level in VAR's VAE), then an optional 2x resample.
type level struct {
	blocks   []*resBlock
	attns    []*attnBlock // attns[i] follows blocks[i]; nil entries when the level has no attention
	resample *conv        // Downsample2x (encoder) or the conv of Upsample2x (decoder)
}

type mid struct {
	block1, block2 *resBlock
	attn           *attnBlock // nil without using_mid_sa
}

// coder is the Encoder or the Decoder: conv_in, levels, mid, norm_out + SiLU + conv_out. Their level
// order differs: the encoder runs levels 0..n-1 (fine to coarse) before mid, the decoder runs mid first and
// then levels n-1..0.
type coder struct {
	convIn  conv
	levels  []level
	mid     mid
	normOut norm
	convOut conv
}

// loadCoder builds encoder ("encoder", down=true) or decoder ("decoder", down=false) from the checkpoint
// layout, reading the level count, blocks per level, attention placement and channels from the keys.
func (bd *builder) loadCoder(prefix string, cin int) *coder {
	c := &coder{}
	lvlKey := "up"
	if prefix == "encoder" {
		lvlKey = "down"
	}
	n := 0
	for bd.w.Has(fmt.Sprintf("%s.%s.%d.block.0.conv1.weight", prefix, lvlKey, n)) {
		n++
	}
	if n == 0 {
		bd.fail(&core.WeightError{Tensor: fmt.Sprintf("%s.%s.0.block.0.conv1.weight", prefix, lvlKey), Msg: "missing from checkpoint"})
		return c
	}
	c.levels = make([]level, n)
	c.convIn = bd.conv(prefix+".conv_in", cin, 3, 1, pad1)
	ch := c.convIn.cout

	loadLevel := func(i int) {
		lv := &c.levels[i]
		base := fmt.Sprintf("%s.%s.%d", prefix, lvlKey, i)
		for j := 0; bd.w.Has(fmt.Sprintf("%s.block.%d.conv1.weight", base, j)); j++ {
			var r *resBlock
			r, ch = bd.resBlock(fmt.Sprintf("%s.block.%d", base, j), ch)
			lv.blocks = append(lv.blocks, r)
			var a *attnBlock
			if name := fmt.Sprintf("%s.attn.%d", base, j); bd.w.Has(name + ".qkv.weight") {
				a = bd.attnBlock(name, ch)
			}
			lv.attns = append(lv.attns, a)
		}
		if prefix == "encoder" {
			if name := base + ".downsample.conv"; bd.w.Has(name + ".weight") {
				// Downsample2x pads right and bottom by one, then a 3x3 stride-2 conv without padding.
				s := bd.conv(name, ch, 3, 2, [4]int{0, 0, 1, 1})
				lv.resample = &s
			}
		} else if name := base + ".upsample.conv"; bd.w.Has(name + ".weight") {
			s := bd.conv(name, ch, 3, 1, pad1)
			lv.resample = &s
		}
	}
	loadMid := func() {
		c.mid.block1, ch = bd.resBlock(prefix+".mid.block_1", ch)
		if bd.w.Has(prefix + ".mid.attn_1.qkv.weight") {
			c.mid.attn = bd.attnBlock(prefix+".mid.attn_1", ch)
		}
		c.mid.block2, ch = bd.resBlock(prefix+".mid.block_2", ch)
	}
	if prefix == "encoder" {
		for i := 0; i < n; i++ {
			loadLevel(i)
		}
		loadMid()
	} else {
		loadMid()
		for i := n - 1; i >= 0; i-- {
			loadLevel(i)
		}
	}
	c.normOut = bd.norm(prefix+".norm_out", ch)
	c.convOut = bd.conv(prefix+".conv_out", ch, 3, 1, pad1)
	return c
}

func (lv *level) run(o *core.Ops, h *core.Tensor, up bool) *core.Tensor {
	for i, b := range lv.blocks {
		h2 := b.apply(o, h)
		o.Free(h)
		h = h2
		if a := lv.attns[i]; a != nil {
			h2 = a.apply(o, h)
			o.Free(h)
			h = h2
		}
	}
	if lv.resample != nil {
		if up {
			u := o.Upsample2x(h)
			o.Free(h)
			h = u
		}
		h2 := lv.resample.apply(o, h)
		o.Free(h)
		h = h2
	}
	return h
}

func (m *mid) run(o *core.Ops, h *core.Tensor) *core.Tensor {
	h1 := m.block1.apply(o, h)
	if m.attn != nil {
		h2 := m.attn.apply(o, h1)
		o.Free(h1)
		h1 = h2
	}
	out := m.block2.apply(o, h1)
	o.Free(h1)
	return out
}

func (c *coder) tail(o *core.Ops, h *core.Tensor) *core.Tensor {
	n := c.normOut.apply(o, h, true)
	out := c.convOut.apply(o, n)
	o.Free(n)
	return out
}

// encode: x [B, 3, H, W] in [-1, 1] -> [B, z, H/2^(n-1), W/2^(n-1)]. Taps: vae.enc.conv_in,
// vae.enc.down{i} (after level i's downsample), vae.enc.mid, vae.enc.out.
func (c *coder) encode(o *core.Ops, x *core.Tensor) *core.Tensor {
	h := c.convIn.apply(o, x)
	o.Tap("vae.enc.conv_in", h)
	for i := range c.levels {
		h = c.levels[i].run(o, h, false)
		o.Tap(fmt.Sprintf("vae.enc.down%d", i), h)
	}
	h2 := c.mid.run(o, h)
	o.Free(h)
	o.Tap("vae.enc.mid", h2)
	out := c.tail(o, h2)
	o.Free(h2)
	o.Tap("vae.enc.out", out)
	return out
}

// decode: z [B, Cvae, h, w] -> [B, 3, H, W] before clamping. Taps: vae.dec.conv_in, vae.dec.mid,
// vae.dec.up{i} (after level i's upsample), vae.dec.pre_clamp.
func (c *coder) decode(o *core.Ops, z *core.Tensor) *core.Tensor {
	h := c.convIn.apply(o, z)
	o.Tap("vae.dec.conv_in", h)
	h2 := c.mid.run(o, h)
	o.Free(h)
	o.Tap("vae.dec.mid", h2)
	h = h2
	for i := len(c.levels) - 1; i >= 0; i-- {
		h = c.levels[i].run(o, h, true)
		o.Tap(fmt.Sprintf("vae.dec.up%d", i), h)
	}
	out := c.tail(o, h)
	o.Free(h)
	o.Tap("vae.dec.pre_clamp", out)
	return out
}
