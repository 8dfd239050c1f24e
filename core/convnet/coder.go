package convnet

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// Layout names how a checkpoint spells the coder's keys. The networks are the same.
type Layout int

const (
	// Taming is the taming-transformers / LDM layout of VAR's VQVAE and MAR's KL-16 VAE:
	// <p>.down.N.block.M / <p>.up.N.block.M, attention <p>.{down,up}.N.attn.M, <p>.N.downsample.conv or
	// upsample.conv, <p>.mid.block_1, mid.attn_1, mid.block_2. Decoder level N = 0 is the finest: the
	// decoder runs its levels from the last to the first.
	Taming Layout = iota
	// LlamaGen is the layout of LlamaGen's VQ tokenizers (FlexVAR's VQ-16): <p>.conv_blocks.N.res.M,
	// conv_blocks.N.attn.M, conv_blocks.N.downsample.conv / upsample.conv, <p>.mid.0 (res), mid.1 (attn),
	// mid.2 (res). Decoder level N = 0 is the coarsest: both coders run their levels in key order.
	LlamaGen
)

func (l Layout) String() string {
	switch l {
	case Taming:
		return "taming"
	case LlamaGen:
		return "llamagen"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// DetectLayout tells the layout of the coder under prefix ("encoder" or "decoder") from its keys.
func DetectLayout(w *core.Weights, prefix string) (Layout, bool) {
	switch {
	case w.Has(prefix + ".conv_blocks.0.res.0.conv1.weight"):
		return LlamaGen, true
	case w.Has(prefix+".down.0.block.0.conv1.weight") || w.Has(prefix+".up.0.block.0.conv1.weight"):
		return Taming, true
	}
	return Taming, false
}

// Level is one resolution of the encoder or decoder: res blocks, each optionally followed by an attention
// block, then an optional 2x resample.
type Level struct {
	Blocks   []*ResBlock
	Attns    []*AttnBlock // Attns[i] follows Blocks[i]; nil entries where the level has no attention
	Resample *Conv        // Downsample2x (encoder) or the conv of Upsample2x (decoder)
}

// Mid is the res / attention / res block at the coarsest resolution.
type Mid struct {
	Block1, Block2 *ResBlock
	Attn           *AttnBlock // nil without mid attention
}

// Coder is an Encoder or a Decoder: conv_in, levels, mid, norm_out + SiLU + conv_out. The encoder runs
// Levels[0..n-1] (fine to coarse) before Mid; the decoder runs Mid first and then Levels[n-1..0], so in
// both Levels[0] is the finest resolution whatever the checkpoint's numbering.
type Coder struct {
	ConvIn  Conv
	Levels  []Level
	Mid     Mid
	NormOut Norm
	ConvOut Conv
	Layout  Layout
}

// LoadCoder builds the encoder (prefix "encoder") or the decoder ("decoder") taking cin channels, reading
// the level count, blocks per level, attention placement and channels from the keys of the given layout.
func (bd *Builder) LoadCoder(prefix string, cin int, layout Layout) *Coder {
	c := &Coder{Layout: layout}
	enc := prefix == "encoder"
	// The key names of level i (in checkpoint numbering), its j-th res block and attention block.
	var levelKey, resKey, attnKey string
	var midRes1, midAttn, midRes2 string
	switch layout {
	case LlamaGen:
		levelKey, resKey, attnKey = prefix+".conv_blocks.%d", ".res.%d", ".attn.%d"
		midRes1, midAttn, midRes2 = prefix+".mid.0", prefix+".mid.1", prefix+".mid.2"
	default:
		if enc {
			levelKey = prefix + ".down.%d"
		} else {
			levelKey = prefix + ".up.%d"
		}
		resKey, attnKey = ".block.%d", ".attn.%d"
		midRes1, midAttn, midRes2 = prefix+".mid.block_1", prefix+".mid.attn_1", prefix+".mid.block_2"
	}
	n := 0
	for bd.W.Has(fmt.Sprintf(levelKey+resKey+".conv1.weight", n, 0)) {
		n++
	}
	if n == 0 {
		bd.Fail(&core.WeightError{Tensor: fmt.Sprintf(levelKey+resKey+".conv1.weight", 0, 0), Msg: "missing from checkpoint"})
		return c
	}
	c.Levels = make([]Level, n)
	c.ConvIn = bd.Conv(prefix+".conv_in", cin, 3, 1, Pad1)
	ch := c.ConvIn.Cout

	// loadLevel loads checkpoint level ki into Levels[li].
	loadLevel := func(ki, li int) {
		lv := &c.Levels[li]
		base := fmt.Sprintf(levelKey, ki)
		for j := 0; bd.W.Has(fmt.Sprintf(base+resKey+".conv1.weight", j)); j++ {
			var r *ResBlock
			r, ch = bd.ResBlock(fmt.Sprintf(base+resKey, j), ch)
			lv.Blocks = append(lv.Blocks, r)
			var a *AttnBlock
			if name := fmt.Sprintf(base+attnKey, j); bd.HasAttn(name) {
				a = bd.AttnBlock(name, ch)
			}
			lv.Attns = append(lv.Attns, a)
		}
		if enc {
			if name := base + ".downsample.conv"; bd.W.Has(name + ".weight") {
				// Downsample2x pads right and bottom by one, then a 3x3 stride-2 conv without padding.
				s := bd.Conv(name, ch, 3, 2, [4]int{0, 0, 1, 1})
				lv.Resample = &s
			}
		} else if name := base + ".upsample.conv"; bd.W.Has(name + ".weight") {
			s := bd.Conv(name, ch, 3, 1, Pad1)
			lv.Resample = &s
		}
	}
	loadMid := func() {
		c.Mid.Block1, ch = bd.ResBlock(midRes1, ch)
		if bd.HasAttn(midAttn) {
			c.Mid.Attn = bd.AttnBlock(midAttn, ch)
		}
		c.Mid.Block2, ch = bd.ResBlock(midRes2, ch)
	}
	// Levels are loaded in run order, so that the channel count chains.
	switch {
	case enc:
		for i := 0; i < n; i++ {
			loadLevel(i, i)
		}
		loadMid()
	case layout == LlamaGen: // decoder, coarsest first in the checkpoint
		loadMid()
		for i := 0; i < n; i++ {
			loadLevel(i, n-1-i)
		}
	default: // taming decoder, finest first in the checkpoint
		loadMid()
		for i := n - 1; i >= 0; i-- {
			loadLevel(i, i)
		}
	}
	c.NormOut = bd.Norm(prefix+".norm_out", ch)
	c.ConvOut = bd.Conv(prefix+".conv_out", ch, 3, 1, Pad1)
	return c
}

func (lv *Level) run(o *core.Ops, h *core.Tensor, up bool) *core.Tensor {
	for i, b := range lv.Blocks {
		h2 := b.Apply(o, h)
		o.Free(h)
		h = h2
		if a := lv.Attns[i]; a != nil {
			h2 = a.Apply(o, h)
			o.Free(h)
			h = h2
		}
	}
	if lv.Resample != nil {
		if up {
			u := o.Upsample2x(h)
			o.Free(h)
			h = u
		}
		h2 := lv.Resample.Apply(o, h)
		o.Free(h)
		h = h2
	}
	return h
}

func (m *Mid) run(o *core.Ops, h *core.Tensor) *core.Tensor {
	h1 := m.Block1.Apply(o, h)
	if m.Attn != nil {
		h2 := m.Attn.Apply(o, h1)
		o.Free(h1)
		h1 = h2
	}
	out := m.Block2.Apply(o, h1)
	o.Free(h1)
	return out
}

func (c *Coder) tail(o *core.Ops, h *core.Tensor) *core.Tensor {
	n := c.NormOut.Apply(o, h, true)
	out := c.ConvOut.Apply(o, n)
	o.Free(n)
	return out
}

// Encode: x [B, 3, H, W] in [-1, 1] -> [B, z, H/2^(n-1), W/2^(n-1)]. Taps: vae.enc.conv_in,
// vae.enc.down{i} (after level i, finest = 0), vae.enc.mid, vae.enc.out.
func (c *Coder) Encode(o *core.Ops, x *core.Tensor) *core.Tensor {
	h := c.ConvIn.Apply(o, x)
	o.Tap("vae.enc.conv_in", h)
	for i := range c.Levels {
		h = c.Levels[i].run(o, h, false)
		o.Tap(fmt.Sprintf("vae.enc.down%d", i), h)
	}
	h2 := c.Mid.run(o, h)
	o.Free(h)
	o.Tap("vae.enc.mid", h2)
	out := c.tail(o, h2)
	o.Free(h2)
	o.Tap("vae.enc.out", out)
	return out
}

// Decode: z [B, Cz, h, w] -> [B, 3, H, W], not clamped. Taps: vae.dec.conv_in, vae.dec.mid,
// vae.dec.up{i} (after level i, finest = 0), vae.dec.pre_clamp.
func (c *Coder) Decode(o *core.Ops, z *core.Tensor) *core.Tensor {
	h := c.ConvIn.Apply(o, z)
	o.Tap("vae.dec.conv_in", h)
	h2 := c.Mid.run(o, h)
	o.Free(h)
	o.Tap("vae.dec.mid", h2)
	h = h2
	for i := len(c.Levels) - 1; i >= 0; i-- {
		h = c.Levels[i].run(o, h, true)
		o.Tap(fmt.Sprintf("vae.dec.up%d", i), h)
	}
	out := c.tail(o, h)
	o.Free(h)
	o.Tap("vae.dec.pre_clamp", out)
	return out
}

// FLOPs counts a convolution's arithmetic on an output of h x w pixels: 2 per multiply-add.
func (c *Conv) FLOPs(h, w int) int64 {
	return 2 * int64(c.Cout) * int64(c.Cin*c.K*c.K) * int64(h) * int64(w)
}

// DecodeFLOPs counts one decode of a z [1, Cz, h, w] latent by the loaded decoder: every convolution
// (2*Cout*Cin*k*k per output pixel) and each attention block's q.k and p.v (4*HW*HW*C) besides its 1x1
// convs. Norms and activations are left out (O(1/width) of the products). Layout-independent: it walks
// the loaded layers.
func (c *Coder) DecodeFLOPs(h, w int) int64 {
	var total int64
	res := func(r *ResBlock) {
		total += r.Conv1.FLOPs(h, w) + r.Conv2.FLOPs(h, w)
		if r.Shortcut != nil {
			total += r.Shortcut.FLOPs(h, w)
		}
	}
	attn := func(a *AttnBlock) {
		if a == nil {
			return
		}
		hw := int64(h) * int64(w)
		total += a.QKV.FLOPs(h, w) + a.Proj.FLOPs(h, w) + 4*hw*hw*int64(a.C)
	}
	total += c.ConvIn.FLOPs(h, w)
	res(c.Mid.Block1)
	attn(c.Mid.Attn)
	res(c.Mid.Block2)
	for i := len(c.Levels) - 1; i >= 0; i-- {
		lv := &c.Levels[i]
		for j, b := range lv.Blocks {
			res(b)
			attn(lv.Attns[j])
		}
		if lv.Resample != nil {
			h, w = 2*h, 2*w // nearest 2x, then the conv at the new size
			total += lv.Resample.FLOPs(h, w)
		}
	}
	return total + c.ConvOut.FLOPs(h, w)
}
