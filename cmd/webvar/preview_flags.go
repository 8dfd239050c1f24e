package main

import (
	"flag"
	"fmt"
	"io"
)

// The preview's flags are parsed in every build (so `webvar preview -h` and flag errors work without the
// window), while the window itself is only linked with -tags preview: see preview.go.

type previewFlags struct {
	model      modelFlags
	backend    string
	threads    int
	class      int
	seed       uint64
	sampling   samplingFlags
	flex       flexFlags
	autostart  bool
	screenshot string
	depth      int
	saveDir    string
	// Editing: an input image and how to edit it (E in the window; -autostart edits at once).
	image, editMode, box string
	keep                 int
	noClass              bool
}

func parsePreview(args []string, stderr io.Writer) (*previewFlags, error) {
	f := &previewFlags{}
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.model.register(fs)
	fs.StringVar(&f.backend, "backend", "auto", "compute backend: webgpu (native: Vulkan, Metal), cpu, or auto (webgpu if an adapter opens, else cpu)")
	fs.IntVar(&f.threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.IntVar(&f.class, "class", 0, "initial class label")
	fs.Uint64Var(&f.seed, "seed", 0, "initial random seed")
	f.sampling.register(fs)
	f.flex.register(fs)
	fs.BoolVar(&f.autostart, "autostart", false, "generate once as soon as the model has loaded")
	fs.StringVar(&f.screenshot, "screenshot", "", "with -autostart: after the first image, save the window's canvas as this PNG and exit")
	fs.IntVar(&f.depth, "depth", 0, "with -screenshot: capture the image from the first k code depths (RQ's depth stepper; 0: every depth)")
	fs.StringVar(&f.saveDir, "save-dir", ".", "directory that the Save PNG button writes to")
	fs.StringVar(&f.image, "image", "", "an image (PNG, JPEG, GIF) to edit: E edits it (a box can be dragged across it; files dropped onto the window replace it); with -autostart the edit runs at once")
	fs.StringVar(&f.editMode, "edit", "", "with -image: inpaint, outpaint, refine, expand (FlexVAR) or complete (RQ) (default: the family's first)")
	fs.StringVar(&f.box, "box", "", "with -image: y0,x0,y1,x1, the box in fractions of the image (in- and out-painting)")
	fs.IntVar(&f.keep, "keep", 0, "with -image: steps kept whole (refine) or rows of codes kept (complete)")
	fs.BoolVar(&f.noClass, "no-class", false, "with -image: in-paint without a class (the null class)")
	if err := parseModelFlagSet(fs, args, &f.model, &f.sampling, &f.flex); err != nil {
		return nil, err
	}
	switch {
	case f.backend != "cpu" && f.backend != "webgpu" && f.backend != "auto":
		return nil, usageError{fmt.Sprintf("-backend %q: want auto, webgpu or cpu", f.backend)}
	case f.screenshot != "" && !f.autostart:
		return nil, usageError{"-screenshot needs -autostart (it captures the first generated image)"}
	case f.depth < 0 || f.depth > 0 && f.screenshot == "":
		return nil, usageError{"-depth takes k >= 1 and goes with -screenshot"}
	case f.class < 0:
		return nil, usageError{"-class must be >= 0"}
	case f.image == "" && (f.editMode != "" || f.box != "" || f.keep != 0 || f.noClass):
		return nil, usageError{"-edit, -box, -keep and -no-class go with -image"}
	}
	if f.box != "" {
		if _, err := parseBox(f.box); err != nil {
			return nil, usageError{"-box: " + err.Error()}
		}
	}
	return f, nil
}

// settings are the family settings the flags gave (the window starts with them; the model's defaults
// fill the rest, and a setting the model does not take is named in the status line).
func (f *previewFlags) settings() map[string]string {
	s := f.sampling.given()
	for k, v := range f.flex.given() {
		s[k] = v
	}
	if f.model.patchNums != "" {
		// FlexVAR's schedule; a VAR model takes -patch-nums at load and has no such setting.
		s["schedule"] = f.model.patchNums
	}
	return s
}
