# Sourced by the scripts that run podman (image.sh, test.sh, bench.sh): podman and podman-compose
# read .build/containers.conf instead of /etc's. This machine's container sandbox refuses
# podman's defaults, so the file says what works here: runc with cgroupfs, and ulimits no higher
# than this shell's hard limits (the default nofile of 1048576 is refused by setrlimit).
# shellcheck shell=bash
mkdir -p .build
nofile=$(ulimit -Hn); [[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
nproc=$(ulimit -Hu); [[ $nproc == unlimited || $nproc -gt 4096 ]] && nproc=4096
cat >.build/containers.conf <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$PWD/.build/containers.conf
unset nofile nproc
