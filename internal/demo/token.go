package demo

import (
	"crypto/rand"
	"encoding/hex"
)

// randomToken returns a fresh publish token for the demo's master.
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
