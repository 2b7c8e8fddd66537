# switchyard: `make run` starts the server on its embedded store; `make test` runs every test.
CARGO ?= cargo
BIN := target/release/switchyard

.PHONY: run build dist test unit test-redis test-redis-cluster conformance conformance-redis bench lint fmt

## Run the server with ./config.yaml and the embedded store in ./data.
run:
	$(CARGO) run --release -- serve

## One release build serves the binary, the Rust tests, conformance and the benchmark.
build:
	$(CARGO) build --release --locked

## The optimized binary (target/dist/switchyard): what `make bench` measures and what to deploy.
dist:
	$(CARGO) build --profile dist --locked --bin switchyard

## Every test: Rust unit and integration tests (the HTTP suites once per backend), then the
## official-SDK conformance suite. Redis tests start their own redis-server (or use REDIS_URL).
test: build unit test-redis test-redis-cluster conformance conformance-redis

unit:
	$(CARGO) test --release --locked

## The HTTP suites again, every server on a private Redis instead of the embedded store.
test-redis:
	SWITCHYARD_TEST_BACKEND=redis $(CARGO) test --release --locked \
		--test protocol --test streaming --test http_surface --test durability --test admin_queue --test auth --test rate_limits --test metrics --test sessions --test capture --test deliveries --test webhooks

## The Redis suites again on a Redis Cluster of three masters (started by the tests): the
## store contract, several instances, and every HTTP suite that does not stop Redis.
test-redis-cluster:
	SWITCHYARD_TEST_BACKEND=redis-cluster $(CARGO) test --release --locked \
		--test store_contract --test scale_out --test redis_cluster --test protocol --test streaming --test http_surface --test durability --test admin_queue --test auth --test rate_limits --test metrics --test sessions --test capture --test deliveries --test webhooks

conformance: build
	conformance/run.sh $(BIN)

## The official SDK clients again, against a server on a private Redis.
conformance-redis: build
	CONFORMANCE_BACKEND=redis conformance/run.sh $(BIN)

## Load benchmark side by side with the official SDK servers (not part of CI).
bench: dist
	BENCH_PROFILE=dist bench/run.sh target/dist/switchyard

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt
