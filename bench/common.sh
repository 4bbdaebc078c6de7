# Shared by callgrind.sh and perf.sh (sourced, not run): the arguments, the
# release binary, a free port, waiting for a server, and the session cookies
# wrk rotates over.
#
#   . "$(dirname "$0")/common.sh" "$@"
#
# Sets: variant, workload, secs, redis_url, here, bin, work (a fresh
# temporary directory), port.

variant=${1:?variant (see: sessionkit-bench list)}
workload=${2:?read, write or new}
secs=${3:-6}
redis_url=${4:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${CARGO_TARGET_DIR:-$here/../target}/release/sessionkit-bench
if [ ! -x "$bin" ]; then
    echo "no $bin: build it first (cargo build --release -p sessionkit-bench; set CARGO_TARGET_DIR if you use one)" >&2
    exit 2
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Waits (up to 20 s) until the server's log says it accepts connections.
wait_ready() {
    for _ in $(seq 1 100); do
        grep -q ready "$1" 2>/dev/null && return 0
        sleep 0.2
    done
}

# Creates 300 sessions through /new and prints the path of the file of their
# cookies, or `-` for the `new` workload (sent without a cookie). The
# ceilings set no cookie: they get same-size dummy ones.
make_cookies() {
    local file="$work/cookies.txt"
    for _ in $(seq 1 300); do
        curl -s -D - -o /dev/null "http://127.0.0.1:$port/new" |
            sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p'
    done >"$file"
    if [ ! -s "$file" ]; then
        for i in $(seq 1 300); do printf '__Host-id=%043d\n' "$i"; done >"$file"
    fi
    if [ "$workload" = new ]; then echo -; else echo "$file"; fi
}
