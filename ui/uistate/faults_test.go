package uistate

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/weights"
)

// A download that failed on the network after the loader's retries (or kept serving bytes that did not
// verify) is not a dead end: the state stops with the loader's message, naming the chunk, and Load tries
// again. A malformed model stays a failure.
func TestNetworkFailureCanLoadAgain(t *testing.T) {
	for _, kind := range []error{weights.ErrIO, weights.ErrIntegrity} {
		s := New(Defaults())
		err := fmt.Errorf("loading weights from weights/: %w",
			&weights.Error{Kind: kind, Chunk: "chunk-00002.bin", Msg: "open (gave up after 5 tries)"})
		s.OnLoaded(ModelInfo{}, err)
		if s.Phase != Stopped || !strings.Contains(s.Message, "chunk-00002.bin") || !strings.Contains(s.Message, "try again") {
			t.Fatalf("%v: phase %v message %q, want Stopped naming the chunk and offering to try again", kind, s.Phase, s.Message)
		}
		if c := click(t, s, ActGenerate); c.Kind != Load || s.Phase != Loading {
			t.Fatalf("Load after a network failure: command %v phase %v, want Load and Loading", c.Kind, s.Phase)
		}
		s.OnLoaded(tiny, nil)
		if s.Phase != Idle {
			t.Fatalf("phase %v after loading again, want Idle", s.Phase)
		}
	}
	s := New(Defaults())
	s.OnLoaded(ModelInfo{}, &weights.Error{Kind: weights.ErrFormat, Msg: "absurd"})
	if s.Phase != Failed {
		t.Fatalf("phase %v after a malformed manifest, want Failed", s.Phase)
	}
}

// A run that ends because the GPU device was lost stops the state (not Idle: the generator is dead) with
// a message naming the loss; Load reopens, and the next Generate is the same request as before the loss.
func TestDeviceLostStopsForLoad(t *testing.T) {
	s := New(Defaults())
	s.OnLoaded(tiny, nil)
	c := click(t, s, ActGenerate)
	if c.Kind != Start {
		t.Fatalf("Generate: command %v", c.Kind)
	}
	before := c.Request
	s.OnDone(s.Run.ID, nil, fmt.Errorf("scale 2: %w", fmt.Errorf("webgpu: %w: destroyed", core.ErrDeviceLost)))
	if s.Phase != Stopped || s.Lost == nil || !strings.Contains(s.Message, "GPU device lost") {
		t.Fatalf("after a device loss: phase %v message %q, want Stopped naming the loss and offering Load", s.Phase, s.Message)
	}
	if c := click(t, s, ActGenerate); c.Kind != Load {
		t.Fatalf("Generate after a device loss: command %v, want Load", c.Kind)
	}
	s.OnLoaded(tiny, nil)
	if s.Lost != nil || !strings.Contains(s.Message, "recovered from") {
		t.Fatalf("after reopening: lost %v, message %q", s.Lost, s.Message)
	}
	c = click(t, s, ActGenerate)
	if c.Kind != Start || fmt.Sprint(c.Request) != fmt.Sprint(before) {
		t.Fatalf("after reopening: command %v request %+v, want Start with %+v", c.Kind, c.Request, before)
	}
	// A loss while idle stops the state the same way; during a run it waits for the run's end.
	s.OnDeviceLost(fmt.Errorf("webgpu: %w", core.ErrDeviceLost))
	if s.Phase != Generating {
		t.Fatalf("a loss reported during a run changed the phase to %v", s.Phase)
	}
	// Any other error leaves the model usable.
	s.OnDone(s.Run.ID, nil, errors.New("boom"))
	if s.Phase != Idle {
		t.Fatalf("phase %v after an ordinary error, want Idle", s.Phase)
	}
	s.OnDeviceLost(fmt.Errorf("webgpu: %w", core.ErrDeviceLost))
	if s.Phase != Stopped || s.Lost == nil {
		t.Fatalf("a loss while idle: phase %v lost %v, want Stopped", s.Phase, s.Lost)
	}
}
