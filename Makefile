# Rapport's commands. Each target is a script under scripts/ so that CI and people run the same thing.
.PHONY: build test demo bench ci clean

build:            ## Debug build of every target, warnings as errors.
	swift build

test:             ## Build once, start PostgreSQL and the embedded Kafka, run every test, stop them.
	scripts/test

demo:             ## Install, build, PostgreSQL, embedded Kafka, the three workers, a storefront story, a summary.
	scripts/demo

bench:            ## Release build and the foundation benchmark (numbers printed).
	scripts/bench foundation

ci:               ## What CI runs: install the Debian packages, then `make test`.
	bash .ci/run

clean:
	rm -rf .build
