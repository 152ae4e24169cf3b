#!/usr/bin/env bash
# CI: what a user installs is what works. Builds the wheel and sdist from this checkout, checks them
# with twine, installs the WHEEL (not editable) into a fresh virtual environment outside the checkout,
# and runs the three console scripts from a folder outside the checkout: convert + verify the bundled
# example, embed, train a tiny contact head, fold, convert the structure model with its backbone and fold
# with it (numba compiling into the installed package), and each script's --help.
# Run alone: .ci/wheel_check.sh   (after the README's setup; needs a package index for the dependencies)
# PYTHON: the interpreter that makes the fresh venv (default python3).
# BUILD_PYTHON: a Python with build and twine (default: the checkout's .venv, which the README's setup
# makes with the `test` extra, so they are there).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
python=${PYTHON:-python3}
build_python=${BUILD_PYTHON:-$checkout/.venv/bin/python}

# torch and the extras come from the README's setup command (the <!-- ci:setup --> block), so this
# check installs what the README tells users to install.
setup=$(awk '$0 == "<!-- ci:setup -->" { found = 1; next } found && /^```/ { if (inside) exit; inside = 1; next }
             inside { print }' README.md)
torch=$(grep -o 'torch==[0-9][0-9.]*' <<<"$setup" | head -1)
extras=$(grep -o '\.\[[a-z,]*\]' <<<"$setup" | head -1 | tr -d '.[]')
[ -n "$torch" ] && [ -n "$extras" ] || { echo "README.md's ci:setup block names no torch pin or extras" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { echo "+ [${SECONDS} s] $*" >&2; }

step "build the wheel and the sdist into $work/dist"
"$build_python" -m build --outdir "$work/dist" "$checkout" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; exit 1; }
"$build_python" -m twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)

step "fresh venv: $torch, then the wheel with [$extras]"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$torch"
"$work/venv/bin/pip" install -q "$wheel[$extras]"
bin=$work/venv/bin

# From a folder outside the checkout, on a copy of the bundled example: nothing can come from the source tree.
mkdir "$work/run"
cp -r "$checkout/fixtures/tiny-mlm-2.4" "$checkout/fixtures/structures" "$work/run/"
cp -r "$checkout/fixtures/tiny-mixedfold" "$work/run/mixedfold"
cd "$work/run"
"$bin/python" - <<'EOF'
import convert, rnaernie
for package in (convert, rnaernie):
    assert "site-packages" in package.__file__, f"{package.__name__} imported from {package.__file__}, not the wheel"
EOF

step "rnaernie-convert (default command: convert + verify)"
"$bin/rnaernie-convert" tiny-mlm-2.4/model_state.pdparams model
"$bin/python" -c "import json; v = json.load(open('model/verification.json')); assert v['verdict'] == 'pass', v"

step "rnaernie embed"
printf '>a\nGGUCUCUCUGGUUAGACCAGAUCUGAGCCU\n>b\nUAGCUUAUCAGACUGAUGUUGA\n>c\nACGUACGUNNACGU\n' >rna.fa
"$bin/rnaernie" embed model rna.fa -o embeddings.npz
"$bin/python" -c "import numpy; z = numpy.load('embeddings.npz'); print('embed arrays:', sorted(z.files))"

step "rnaernie train --task contact (2 steps) then rnaernie fold"
"$bin/rnaernie" train model structures -o contact --task contact --max-steps 2 --device cpu -q
"$bin/rnaernie" fold contact rna.fa -o folded.dbn
test "$(grep -c '^>' folded.dbn)" -eq 3

step "the structure model: rnaernie-convert --backbone (convert + verify), then rnaernie fold (numba, installed)"
"$bin/rnaernie-convert" mixedfold/model_state.pdparams ssp --backbone tiny-mlm-2.4/model_state.pdparams
"$bin/rnaernie" fold ssp rna.fa -o ssp-folded.dbn
grep -q '^>a score=' ssp-folded.dbn

step "--help of the three console scripts"
for script in rnaernie-convert rnaernie-push rnaernie; do
  "$bin/$script" --help >/dev/null
done
echo "wheel check passed in ${SECONDS} s: $(basename "$wheel") installed outside the checkout converts, verifies, embeds and folds (a contact head and the structure model)"
