# keyloop — see README.md.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
DATA ?= $(CURDIR)/.demo
DEMO_ADDR ?= 127.0.0.1:8787

.PHONY: demo test bench lint build clean

## demo: build and start examples/backend in dev mode, then run `mytool login` against it.
##   DEMO_ADDR=HOST:PORT: where the backend listens (default 127.0.0.1:8787; 127.0.0.1:0 picks a free port)
##   DATA=DIR: where it keeps its dev keys, login state and (without an OS keychain) mytool's keyring
demo: build
	@DEMO_ADDR='$(DEMO_ADDR)' scripts/demo "$(DATA)"

## test: the whole test suite, real parts included (private gnome-keyring, headless Chromium).
test:
	scripts/with-keyring $(GO) test -race -count=1 ./...

## bench: benchmarks, reported as ratios against baselines measured in the same run.
bench:
	scripts/bench

## lint: gofmt, go vet, staticcheck, builds for macOS and Windows (keychain code differs per OS), and
## go.mod's go line (scripts/check-go-line: the oldest Go the dependencies need, stated in README.md).
lint:
	GO=$(GO) scripts/check-go-line
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt: $$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	GOOS=darwin $(GO) build ./...
	GOOS=windows $(GO) build ./...

build:
	mkdir -p bin
	$(GO) build -o bin/ ./examples/backend ./examples/mytool

clean:
	rm -rf bin .demo
