//go:build !js

package weights

const closeSkipsFailedBody = false
