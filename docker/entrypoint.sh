#!/bin/sh
# The image's entrypoint: gives a freshly mounted data directory its two subdirectories, then runs the
# command. A read-only data directory is left as it is; one that this user cannot write is an error
# that names the owner and the fix (training would otherwise fail later, naming a missing directory).
for dir in /data/generated /data/checkpoints; do
    [ -d "$dir" ] && continue
    if ! why=$(mkdir -p "$dir" 2>&1); then
        case $why in
            *"Read-only file system"*) continue ;;
        esac
        echo "error: cannot create $dir: the data directory (DATA_DIR on the host, mounted at /data) belongs to" \
            "uid $(stat -c %u /data) and this container runs as uid $(id -u) (CHARRNN_UID, 1000 unless set)." \
            "Run it as the directory's owner (export CHARRNN_UID=\$(id -u) CHARRNN_GID=\$(id -g) before" \
            "docker compose, as make ... DOCKER=1 does), or make the directory writable for uid $(id -u)" >&2
        exit 2
    fi
done
exec "$@"
