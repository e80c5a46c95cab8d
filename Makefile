# ClusterChat. `make run` needs only Go; `make test` and `make cluster` also
# need MariaDB, Redis and nginx, which `make deps` installs (Debian/apt).

export GOTOOLCHAIN := local

GO       ?= go
BIN      := bin
TIMEOUT  ?= 20m
CLUSTER  := $(BIN)/cluster

.PHONY: all deps build run cluster cluster-down cluster-status test lint bench clean

all: build

## deps: install mariadb-server redis-server nginx libnginx-mod-stream tmux if missing
deps:
	@scripts/deps.sh

## build: bin/chatserver, bin/chatclient, bin/chatbench
build:
	$(GO) build -o $(BIN)/ ./cmd/chatserver ./cmd/chatclient ./cmd/chatbench

## run: one chatserver on 127.0.0.1:8000 with the embedded default (SQLite file, in-process bus)
run:
	$(GO) build -o $(BIN)/ ./cmd/chatserver ./cmd/chatclient
	$(BIN)/chatserver --listen 127.0.0.1:8000 --store sqlite:chat.db

$(CLUSTER): FORCE
	$(GO) build -o $@ ./scripts/cluster

## cluster: MariaDB, Redis, chatserver s1 (:6000) and s2 (:6002), nginx on :8000; state in .cluster/
cluster: deps $(CLUSTER)
	$(GO) build -o $(BIN)/ ./cmd/chatserver ./cmd/chatclient
	$(CLUSTER) up

## cluster-down: stop everything `make cluster` started
cluster-down: $(CLUSTER)
	$(CLUSTER) down

## cluster-status: show what `make cluster` started and whether it still runs
cluster-status: $(CLUSTER)
	$(CLUSTER) status

## test: deps, go vet, go test -race (unit and integration, real MariaDB/Redis/nginx)
test: deps
	$(GO) vet ./...
	$(GO) test -race -timeout $(TIMEOUT) ./...

## lint: gofmt -l (must print nothing) and go vet
lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt -l: files need formatting:"; echo "$$out"; exit 1; fi
	@$(GO) vet ./...

## bench: the chatbench scenarios (scripts/bench.sh)
bench: build
	scripts/bench.sh

## clean: stop the cluster, remove bin/ and .cluster/
clean: cluster-down
	rm -rf $(BIN) .cluster

FORCE:
