// Package fashionflexvar embeds webvar's FlexVAR demo model: a small class-conditional FlexVAR (depth 4,
// width 192) and its LlamaGen-style VQ tokenizer, trained on Fashion-MNIST (32x32, 10 classes) by
// weights/train/train_flexvar.py in the official FlexVAR layouts and converted with `webvar convert`.
// weights/README.md gives its provenance, the commands and its measured quality.
package fashionflexvar

import (
	"embed"
	"io/fs"

	"github.com/webvar/webvar/weights"
)

// Name is the model's name in messages, URLs and the page's model menu.
const Name = "fashionflexvar"

//go:embed manifest.msgpack chunk-*.bin
var files embed.FS

// FS returns the converted weights directory (manifest.msgpack and chunk-*.bin).
func FS() fs.FS { return files }

// Source returns the weights as a weights.Source.
func Source() weights.Source { return weights.FSSource(files) }
