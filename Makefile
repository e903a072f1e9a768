# berth: the two commands a newcomer needs are `make run` and `make test`.
# Both install what they need (Debian packages, Go modules) when missing.
# Run them as root: containers need namespaces, cgroups and mounts.

GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all deps run test check bench images

all: test

deps:
	@scripts/deps.sh

# berth's main job: build an image, push it to a registry (one served
# in-process unless REGISTRY=host:port), pull it into a fresh store, run it.
run: deps
	$(GO) run ./examples/pullrun $(if $(REGISTRY),-registry $(REGISTRY))

# Formatting, go.mod tidiness, vet, staticcheck, the service images the
# sandbox tests run (redis, postgres: built from Debian's packages the
# first time, ~3 min, then cached), then every test (as root they create
# real namespaces, cgroups and mounts; without root they skip with the
# reason), the container suite again with the Default runtime's init
# pool on, then the concurrent code's unit tests again under the race
# detector. orchestrate/etcdstore and examples/cluster are modules of
# their own (they keep the etcd client's grpc out of berth's graph):
# check and test cover them too.
test: deps check
	scripts/images.sh
	$(GO) test -count=1 -timeout 15m ./...
	BERTH_TEST_INIT_POOL=2 $(GO) test -count=1 -timeout 10m ./container/
	$(GO) test -race -count=1 -timeout 10m -skip 'TestE2E' ./orchestrate/... ./registry/ ./layer/content/
	cd orchestrate/etcdstore && $(GO) test -count=1 -timeout 10m ./... && $(GO) test -race -count=1 -timeout 10m ./...

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "not gofmt-formatted: $$unformatted"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd orchestrate/etcdstore && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...
	cd examples/cluster && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

# Service images for tests (redis, postgres) built from Debian packages
# and cached; see scripts/images.sh for the cache's path rule. IMAGES
# picks some (make images IMAGES=redis).
images: deps
	scripts/images.sh $(IMAGES)

# Benchmarks: go test -bench, and berth beside runc and crun.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 200x ./container/ ./cgroup/
	bench/runtimes.sh
