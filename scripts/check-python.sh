#!/bin/sh
# Usage: check-python.sh PYTHON VENV (run by make before it builds VENV with PYTHON).
# Stops with one clear line when PYTHON is missing, older than 3.11 or cannot
# build virtual environments; removes VENV when another Python built it (or it
# broke half-way), so make builds it again instead of failing on it forever.
python=$1
venv=$2
say() { echo "make: $*" >&2; }
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

version=$(version_of "$python") || {
    say "cannot run '$python': install Python 3.11 or newer, or name one: make run PYTHON=python3.12"
    exit 1
}
major=${version%%.*}
minor=${version#*.}
case $major.$minor in
    [0-9]*.[0-9]*) ;;
    *) say "'$python' reports no Python version"; exit 1 ;;
esac
if [ "$major" -lt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -lt 11 ]; }; then
    say "'$python' is Python $version; this project needs 3.11 or newer." \
        "Install one, or name it: make run PYTHON=python3.11"
    exit 1
fi
"$python" -c 'import ensurepip, venv' 2>/dev/null || {
    say "'$python' cannot build virtual environments (no ensurepip): on Debian or Ubuntu," \
        "sudo apt install python3-venv (or python$version-venv)"
    exit 1
}
if [ -e "$venv" ]; then
    built=$(version_of "$venv/bin/python")
    reason=
    if [ -z "$built" ]; then
        reason="its Python does not run"
    elif [ "$built" != "$version" ]; then
        reason="Python $built built it, not $python ($version)"
    elif [ ! -x "$venv/bin/pip" ]; then
        reason="it has no pip (an earlier build stopped half-way)"
    fi
    if [ -n "$reason" ]; then
        say "rebuilding $venv: $reason"
        rm -rf "$venv"
    fi
fi
