//go:build !preview

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

func runPreview(args []string, stdout, stderr io.Writer) error {
	if _, err := parsePreview(args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	return fmt.Errorf("this webvar was built without the preview window (it needs cgo, X11 and OpenGL): " +
		"go build -tags preview ./cmd/webvar")
}
