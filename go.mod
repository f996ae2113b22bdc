module github.com/pkgcdn/pkgcdn

go 1.26.0

require (
	aead.dev/minisign v0.3.0
	github.com/klauspost/compress v1.20.4
	github.com/minio/sha256-simd v1.0.1
)

require (
	github.com/klauspost/cpuid/v2 v2.2.3 // indirect
	golang.org/x/crypto v0.13.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
