# The map of what a developer or operator can do. `scripts/just --list` explains each recipe;
# scripts/just bootstraps .venv on first use, so plain `just` works once it exists.

set positional-arguments

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# List the recipes
default:
    @just --list --unsorted

# Start the embedded site (NATS + every built service), state under ./data; Ctrl-C stops it
[no-exit-message]
up *args:
    sinew up "$@"

# Start three hospitals (north, south, east) and play a simulated day once (docs/demo.md);
# add --usages N or --seed S; Ctrl-C stops it and `just demo` again resumes without replaying
[no-exit-message]
demo *args:
    sinew up --demo "$@"

# Run the whole test suite against real nats-server processes (args go to pytest)
test *args:
    python -m pytest "$@"

# Lint and format check (ruff)
lint:
    ruff check .
    ruff format --check .

# Format the code (ruff)
fmt:
    ruff format .
    ruff check --fix .

# Benchmark the runtime against raw JetStream and FastStream (add --json, --quick)
bench *args:
    pip install --quiet --disable-pip-version-check -e ".[bench]"
    python scripts/bench.py "$@"

# Regenerate JSON Schemas, AsyncAPI, stream/consumer declarations and NATS permissions
contracts *args:
    sinew contracts "$@"

# Follow a stream or subject from now, e.g. `just tail USAGE --site north`
tail *args:
    sinew tail "$@"

# Dead letters: `just dlq list`, `just dlq show ID`, `just dlq replay ID|--cause C`
dlq *args:
    sinew dlq "$@"

# Pending and unacknowledged messages per consumer
backlog *args:
    sinew backlog "$@"

# Services answering $SRV.INFO, with their status (handled, duplicates, outbox, dead letters)
services *args:
    sinew services "$@"

# Multi-site hub: `just hub init|join|provision|status|report ...` (docs/deployment.md, multi-site)
hub *args:
    sinew hub "$@"
