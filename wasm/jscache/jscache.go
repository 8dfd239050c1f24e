//go:build js

// Package jscache implements weights.Cache on the browser's Cache API (CacheStorage), so that verified
// weight chunks survive a reload and a second visit downloads nothing but the manifest.
//
// Entries are content-addressed: the key is a synthetic same-origin URL holding the chunk's SHA-256, the
// value a Response whose body is the chunk's bytes. The loader verifies whatever Get returns, so every
// failure here is reported as a miss (Get) or ignored (Put), never as an error or a panic.
//
// Every method blocks on JavaScript promises: call them from a goroutine, never from inside a js.FuncOf
// callback (the callback would hold the event loop that has to settle the promise).
package jscache

import (
	"errors"
	"fmt"
	"strings"
	"syscall/js"
)

// KeyPrefix is the path under which entries are keyed; it is never fetched from the network.
const KeyPrefix = "/webvar-weights/"

// Cache is one opened CacheStorage cache.
type Cache struct {
	c       js.Value
	refused error // the first failed Store
}

// Open opens (creating if needed) the named cache. It fails where the page has no CacheStorage, as on an
// insecure (non-HTTPS, non-localhost) origin.
func Open(cacheName string) (c *Cache, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("jscache: opening %q: %v", cacheName, r)
		}
	}()
	caches := js.Global().Get("caches")
	if caches.IsUndefined() || caches.IsNull() {
		return nil, errors.New("jscache: the Cache API is unavailable (window.caches is missing; insecure origin?)")
	}
	v, err := await(caches.Call("open", cacheName))
	if err != nil {
		return nil, fmt.Errorf("jscache: opening %q: %w", cacheName, err)
	}
	if v.IsUndefined() || v.IsNull() {
		return nil, fmt.Errorf("jscache: opening %q: no cache", cacheName)
	}
	return &Cache{c: v}, nil
}

// key is the synthetic URL of a chunk's entry; the hash alone identifies the content.
func key(sha256 string) string {
	return KeyPrefix + strings.ToLower(sha256)
}

// Get returns the bytes stored under sha256 (name is not part of the key: equal content is one entry).
func (c *Cache) Get(name, sha256 string) (data []byte, ok bool) {
	if c == nil || sha256 == "" {
		return nil, false
	}
	defer func() {
		if r := recover(); r != nil {
			data, ok = nil, false
		}
	}()
	resp, err := await(c.c.Call("match", key(sha256)))
	if err != nil || resp.IsUndefined() || resp.IsNull() || !resp.Get("ok").Bool() {
		return nil, false
	}
	buf, err := await(resp.Call("arrayBuffer"))
	if err != nil || buf.IsUndefined() || buf.IsNull() {
		return nil, false
	}
	u8 := js.Global().Get("Uint8Array").New(buf)
	data = make([]byte, u8.Get("length").Int())
	if js.CopyBytesToGo(data, u8) != len(data) {
		return nil, false
	}
	return data, true
}

// Put stores data under sha256, replacing any entry there (weights.Cache). A failure (quota, a closed or
// denied cache) is not an error for the loader: Refused reports it, and the next load fetches the chunk
// again.
func (c *Cache) Put(name, sha256 string, data []byte) { _ = c.Store(name, sha256, data) }

// Store is Put that returns the browser's refusal (QuotaExceededError, a closed or denied cache), which
// Refused then reports too.
func (c *Cache) Store(name, sha256 string, data []byte) (err error) {
	if c == nil || sha256 == "" {
		return errors.New("jscache: no cache")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("jscache: storing %s: %v", name, r)
		}
		if err != nil && c.refused == nil {
			c.refused = err
		}
	}()
	u8 := js.Global().Get("Uint8Array").New(len(data))
	js.CopyBytesToJS(u8, data)
	headers := js.Global().Get("Object").New()
	headers.Set("Content-Type", "application/octet-stream")
	init := js.Global().Get("Object").New()
	init.Set("headers", headers)
	resp := js.Global().Get("Response").New(u8, init)
	if _, err := await(c.c.Call("put", key(sha256), resp)); err != nil {
		return fmt.Errorf("jscache: storing %s: %w", name, err)
	}
	return nil
}

// Refused is the first failure to store a chunk since Open, or nil.
func (c *Cache) Refused() error {
	if c == nil {
		return nil
	}
	return c.refused
}

// await blocks the calling goroutine until promise settles, returning its value or its rejection.
func await(promise js.Value) (js.Value, error) {
	if promise.Type() != js.TypeObject || promise.Get("then").Type() != js.TypeFunction {
		return promise, nil // a plain value: nothing to wait for
	}
	ch := make(chan struct{})
	var val js.Value
	var err error
	settled := false
	onOK := js.FuncOf(func(_ js.Value, args []js.Value) any {
		if !settled {
			settled = true
			if len(args) > 0 {
				val = args[0]
			}
			close(ch)
		}
		return nil
	})
	onErr := js.FuncOf(func(_ js.Value, args []js.Value) any {
		if !settled {
			settled = true
			msg := "rejected"
			if len(args) > 0 {
				msg = js.Global().Get("String").Invoke(args[0]).String()
			}
			err = errors.New(msg)
			close(ch)
		}
		return nil
	})
	defer onOK.Release()
	defer onErr.Release()
	promise.Call("then", onOK, onErr)
	<-ch
	return val, err
}
