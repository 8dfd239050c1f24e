// Package fashionmar embeds webvar's MAR demo model: a small class-conditional MAR (width 192, 3+3
// blocks, a 3 x 256 diffusion MLP) and its KL VAE (stride 8, 16 channels), trained on Fashion-MNIST
// (32x32, 10 classes) by weights/train/train_mar.py in LTH14/mar's layouts and converted with
// `webvar convert`. weights/README.md gives its provenance, the commands and its measured quality.
package fashionmar

import (
	"embed"
	"io/fs"

	"github.com/webvar/webvar/weights"
)

// Name is the model's name in messages, URLs and the page's model menu.
const Name = "fashionmar"

//go:embed manifest.msgpack chunk-*.bin
var files embed.FS

// FS returns the converted weights directory (manifest.msgpack and chunk-*.bin).
func FS() fs.FS { return files }

// Source returns the weights as a weights.Source.
func Source() weights.Source { return weights.FSSource(files) }
