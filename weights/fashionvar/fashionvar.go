// Package fashionvar embeds webvar's default model: a small class-conditional VAR (depth 8, width 256) and
// its multi-scale VQVAE, trained on Fashion-MNIST (32x32, 10 classes) by weights/train and converted with
// `webvar convert` (int8 Linear weights). weights/README.md gives its provenance, the commands and its
// measured quality.
//
// Only programs that want a model without a download import this package (cmd/webvar); the browser
// streams the same files over HTTP instead.
package fashionvar

import (
	"embed"
	"io/fs"

	"github.com/webvar/webvar/weights"
)

// Name is the model's name in messages and URLs.
const Name = "fashionvar"

//go:embed manifest.msgpack chunk-*.bin
var files embed.FS

// FS returns the converted weights directory (manifest.msgpack and chunk-*.bin).
func FS() fs.FS { return files }

// Source returns the weights as a weights.Source.
func Source() weights.Source { return weights.FSSource(files) }
