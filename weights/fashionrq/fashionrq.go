// Package fashionrq embeds webvar's RQ-Transformer demo model: a small class-conditional RQ-Transformer
// and its RQ-VAE (4x4 positions of 4 residual codes), trained on Fashion-MNIST (32x32, 10 classes) by
// weights/train/train_rq.py in kakaobrain/rq-vae-transformer's release layout and converted with
// `webvar convert -rq`. weights/README.md gives its provenance, the commands and its measured quality.
package fashionrq

import (
	"embed"
	"io/fs"

	"github.com/webvar/webvar/weights"
)

// Name is the model's name in messages, URLs and the page's model menu.
const Name = "fashionrq"

//go:embed manifest.msgpack chunk-*.bin
var files embed.FS

// FS returns the converted weights directory (manifest.msgpack and chunk-*.bin).
func FS() fs.FS { return files }

// Source returns the weights as a weights.Source.
func Source() weights.Source { return weights.FSSource(files) }
