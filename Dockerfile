# The backup worker: Node 24 LTS running the TypeScript sources through tsx (no build step),
# restic for the repositories, rclone for the source side of a copy to a second destination
# (policies.<p>.copyTo: restic reads it through its rclone: backend, with its own S3 key) and the
# PostgreSQL client tools for dumps.
#
#   docker build -t backup-worker .
#   docker run --rm backup-worker doctor        # any backupctl command; the default is "worker"
#
# test/compose.test.ts checks that the restic version below is at least RESTIC_MIN_VERSION
# (src/restic/restic.ts).

# restic >= 0.17 is required (exit codes 10/11/12); Debian bookworm ships 0.14, so build it.
ARG RESTIC_VERSION=0.18.1
# The version src/servers/binaries.ts pins for the tests.
ARG RCLONE_VERSION=1.76.0

FROM golang:1.26-bookworm AS restic
ARG RESTIC_VERSION
# Static binary (no cgo), reproducible paths, no debug symbols.
RUN CGO_ENABLED=0 GOFLAGS=-trimpath go install -ldflags "-s -w" github.com/restic/restic/cmd/restic@v${RESTIC_VERSION} \
 && /go/bin/restic version

FROM golang:1.26-bookworm AS rclone
ARG RCLONE_VERSION
# Without -X fs.Version rclone calls itself v<version>-DEV.
RUN CGO_ENABLED=0 GOFLAGS=-trimpath go install -ldflags "-s -w -X github.com/rclone/rclone/fs.Version=v${RCLONE_VERSION}" github.com/rclone/rclone@v${RCLONE_VERSION} \
 && /go/bin/rclone version

FROM node:24-bookworm-slim
ARG RESTIC_VERSION
ARG RCLONE_VERSION

# ca-certificates: restic and the AWS SDK verify the S3 endpoint's TLS certificate.
# postgresql-client: pg_dump/pg_restore/psql from Debian bookworm (major version 15); pg_dump
# refuses to dump a server of a newer major version, so PostgreSQL 16+ sources need a newer
# client (e.g. from apt.postgresql.org).
# zstd: the archives (config archives) are restic dump | zstd.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client zstd \
 && rm -rf /var/lib/apt/lists/*

COPY --from=restic /go/bin/restic /usr/local/bin/restic
RUN restic version | grep -q "^restic ${RESTIC_VERSION} "
COPY --from=rclone /go/bin/rclone /usr/local/bin/rclone
RUN rclone version | grep -q "^rclone v${RCLONE_VERSION}$"

ENV NODE_ENV=production \
    RESTIC_BIN=/usr/local/bin/restic \
    RCLONE_BIN=/usr/local/bin/rclone \
    RESTIC_CACHE_DIR=/var/cache/restic

WORKDIR /app
# Dependencies first so that a source change does not reinstall them. tsx is a runtime
# dependency (bin/backupctl.js loads it), so --omit=dev keeps it.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY examples ./examples

# The code stays owned by root (read-only for the worker). The restic cache and the scratch
# folders under /var/tmp (staging, drills) are writable by any user, so the container may also
# run with another uid (compose: user:) to read a deployment folder owned by that uid; mount
# volumes there to keep them across restarts.
RUN mkdir -p "$RESTIC_CACHE_DIR" && chmod 1777 "$RESTIC_CACHE_DIR" /var/tmp
USER node

ENTRYPOINT ["node", "bin/backupctl.js"]
CMD ["worker"]
