# pkgcdn — build, test, benchmark, cross-compile, demo.
# `make demo` runs the main job on a built-in sample set; `make test` runs the whole test suite.

GO       ?= go
PKG      := github.com/pkgcdn/pkgcdn
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -s -w -X $(PKG)/internal/version.Version=$(VERSION) \
            -X $(PKG)/internal/version.Commit=$(COMMIT) -X $(PKG)/internal/version.Date=$(DATE)
CMDS     := pkgpublish pkgserve
PLATFORMS := linux/amd64 linux/arm64 freebsd/amd64 freebsd/arm64
FUZZTIME ?= 100000x

.PHONY: all build test test-deps vet unit fuzz cross-check bench soak cross demo clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# The whole suite: static checks, unit and integration tests under the race
# detector, a short run of every fuzz target, and the cross-builds.
test: test-deps vet unit fuzz cross-check

test-deps:
	@bash scripts/test-deps.sh

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

# Every Fuzz* target with budget FUZZTIME (CI: 100000 executions each; `make
# soak` runs each for minutes). See scripts/fuzz.sh for why a count.
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

cross-check:
	@for p in $(PLATFORMS); do \
		echo "go build $$p"; GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -o /dev/null ./... || exit 1; \
	done

cross:
	@mkdir -p dist
	@for p in $(PLATFORMS); do \
		for c in $(CMDS); do \
			out=dist/$$c-$(VERSION)-$${p%/*}-$${p#*/}; echo "$$out"; \
			CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/$$c || exit 1; \
		done; \
	done

bench:
	bash scripts/bench/run.sh

# The long part of the reliability suite: 2 minutes per fuzz target, then a
# 10-minute soak of master + two chained edges under 200 clients.
soak:
	bash scripts/soak.sh

demo: build
	./bin/pkgserve --demo

clean:
	rm -rf bin dist .bench .demo
