#!/usr/bin/env bash
# Compile the written part into OUT (default build/written): template.pdf (what students get) and
# key.pdf (staff), the key reading the answers.tex and roofline.pdf that
# `python -m staff.inference_math --out OUT` wrote there. `make written` runs both steps.
# Fails on any LaTeX error, undefined control sequence or undefined reference.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "${1:-build/written}"
out="$(cd "${1:-build/written}" && pwd)"
if ! command -v pdflatex >/dev/null; then
    echo "written: pdflatex not found; install TeX Live, e.g. apt-get install texlive-latex-base" >&2
    exit 1
fi
if [ ! -f "$out/answers.tex" ]; then
    echo "written: $out/answers.tex is missing; run python -m staff.inference_math --out $out" >&2
    exit 1
fi

compile() {  # $1: a document in written/, compiled in $out (where answers.tex and the figure are)
    local doc=$1
    for _ in 1 2; do  # the second run settles hyperref's bookmarks
        if ! (cd "$out" && TEXINPUTS="$here:" pdflatex -halt-on-error -interaction=nonstopmode \
            -file-line-error "$here/$doc.tex" >"$doc.stdout" 2>&1); then
            grep -A4 -E '^!|^[^ ]*:[0-9]+: ' "$out/$doc.log" >&2 || tail -20 "$out/$doc.stdout" >&2
            echo "written: LaTeX failed on $doc.tex (log: $out/$doc.log)" >&2
            exit 1
        fi
    done
    # -halt-on-error stops at the first undefined macro; references only warn, so look for them too
    if grep -E 'Undefined control sequence|undefined references|Reference .* undefined' "$out/$doc.log" >&2; then
        echo "written: undefined macros or references in $doc.tex (log: $out/$doc.log)" >&2
        exit 1
    fi
    echo "written: $out/$doc.pdf"
}

compile template
compile key
