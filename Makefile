# The two things most people want: `make demo` and `make test`.
.PHONY: setup demo test lint clean-lab

setup:
	bash .ci/setup

# A lab (real control plane, 3 Linux + 1 Windows hosts), a join of all of them, their status.
demo: setup
	.venv/bin/nodeboot-lab up --linux 3 --windows 1 > /dev/null
	eval "$$(.venv/bin/nodeboot-lab env)" && \
	  .venv/bin/nodeboot join -i "$$NODEBOOT_LAB_INVENTORY" --proxy-mode ipvs && \
	  .venv/bin/nodeboot status -i "$$NODEBOOT_LAB_INVENTORY"
	@echo "the lab stays up: try 'eval \"\$$(.venv/bin/nodeboot-lab env)\"' then nodeboot commands; 'make clean-lab' ends it"

test: setup
	.venv/bin/ruff check .
	.venv/bin/mypy bootstrap/nodeboot
	.venv/bin/pytest -q -ra tests

lint:
	.venv/bin/ruff check .

clean-lab:
	.venv/bin/nodeboot-lab down
