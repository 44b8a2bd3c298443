#!/usr/bin/env bash
# Build the container image the `docker` code-mode sandbox runs, locally and without any registry:
# `FROM scratch`, the mcpgate binary at /mcpgate and exactly the shared libraries `ldd` lists (the dynamic
# loader included) at their paths, nothing else; user 65534:65534, entrypoint `/mcpgate sandbox-worker`.
#
#   scripts/sandbox-image.sh [BINARY] [IMAGE]
#
# BINARY: the mcpgate to put in it (default target/release/mcpgate, else target/debug/mcpgate).
# IMAGE: its name (default $MCPGATE_SANDBOX_IMAGE, else localhost/mcpgate-sandbox:latest).
# The engine: $CONTAINER_ENGINE (a path or a name on PATH), else podman, else docker.
#
# Idempotent: the image is labelled with a digest of its files, and an image with the same digest is kept.
# Prints the image id on stdout (progress goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=${1:-}
if [[ -z $binary ]]; then
    for candidate in "$root/target/release/mcpgate" "$root/target/debug/mcpgate"; do
        if [[ -x $candidate ]]; then
            binary=$candidate
            break
        fi
    done
fi
[[ -n $binary && -x $binary ]] || {
    echo "sandbox-image.sh: no mcpgate binary (build it, or name it: $0 BINARY [IMAGE])" >&2
    exit 2
}
# It must be a mcpgate with the worker: one that says `ready` (it then reads EOF and exits).
said=$("$binary" sandbox-worker --landlock best-effort </dev/null 2>/dev/null || true)
if [[ $said != '{"ready"'* ]]; then
    echo "sandbox-image.sh: $binary is not a mcpgate whose \`sandbox-worker\` starts (an older build?)" >&2
    exit 2
fi
image=${2:-${MCPGATE_SANDBOX_IMAGE:-localhost/mcpgate-sandbox:latest}}
engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
    engine=$(command -v podman || command -v docker || true)
fi
[[ -n $engine ]] || {
    echo "sandbox-image.sh: neither podman nor docker is installed (Debian: apt-get install -y podman)" >&2
    exit 2
}

# Podman's default runtime on Debian, crun, refuses hybrid cgroup hosts (v1 controllers with a v2 `unified`
# mount, as on this project's CI machines): "cgroups in hybrid mode not supported". There, rootful Podman is
# told to use runc, with a drop-in that is written once and left alone after.
dropin=/etc/containers/containers.conf.d/50-mcpgate-sandbox.conf
if [[ $(basename "$engine") == podman && $(id -u) == 0 && ! -e /sys/fs/cgroup/cgroup.controllers ]] &&
    grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/mounts && [[ ! -e $dropin ]]; then
    if ! command -v runc >/dev/null; then
        echo "sandbox-image.sh: this host has hybrid cgroups, which crun refuses: install runc (apt-get install -y runc)" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$dropin")"
    printf '%s\n' "# Written by mcpgate's scripts/sandbox-image.sh: crun refuses hybrid cgroups." \
        "[engine]" 'runtime = "runc"' >"$dropin"
    echo "sandbox-image.sh: wrote $dropin (runtime = runc: this host has hybrid cgroups)" >&2
fi

# The files: the binary, and every library the loader resolves for it, at the path ldd names.
files=("$binary")
declare -A target=(["$binary"]=/mcpgate)
while read -r line; do
    path=
    case $line in
    *'=> not found'*)
        echo "sandbox-image.sh: $binary needs a library that is missing: $line" >&2
        exit 1
        ;;
    *'=> /'*) path=${line#*=> } ;;
    /*) path=$line ;;
    esac
    path=${path%% (*}
    [[ -n $path ]] || continue # linux-vdso.so.1 is the kernel's
    files+=("$path")
    target[$path]=$path
done < <(ldd "$binary" 2>/dev/null || true)

digest=$(for file in "${files[@]}"; do
    printf '%s %s\n' "${target[$file]}" "$(sha256sum <"$(readlink -f "$file")" | cut -d' ' -f1)"
done | sha256sum | cut -d' ' -f1)
label=io.mcpgate.sandbox.digest
if existing=$("$engine" image inspect --format "{{index .Config.Labels \"$label\"}} {{.Id}}" "$image" 2>/dev/null) &&
    [[ ${existing%% *} == "$digest" ]]; then
    echo "sandbox-image.sh: $image is up to date" >&2
    echo "${existing##* }"
    exit 0
fi

context=$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-sandbox-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
{
    echo "FROM scratch"
    for file in "${files[@]}"; do
        # Symbolic links resolved: the image holds each file at the path the loader asks for.
        inside=${target[$file]}
        mkdir -p "$context/rootfs$(dirname "$inside")"
        cp -L "$file" "$context/rootfs$inside"
    done
    echo "COPY rootfs/ /"
    echo "USER 65534:65534"
    echo "WORKDIR /"
    echo 'ENTRYPOINT ["/mcpgate", "sandbox-worker"]'
    echo "LABEL $label=$digest"
} >"$context/Containerfile"
chmod -R a+rX,go-w "$context/rootfs"
echo "sandbox-image.sh: building $image from $binary with $engine: $(cd "$context/rootfs" && find . -type f | sort | tr '\n' ' ')" >&2
"$engine" build -q -f "$context/Containerfile" -t "$image" "$context" >&2
"$engine" image inspect --format '{{.Id}}' "$image"
